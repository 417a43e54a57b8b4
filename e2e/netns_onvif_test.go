package e2e

// ONVIF in the namespace lab: a camera namespace on the store's LAN runs a
// fake ONVIF device (media/onvif/onviftest: the spec's documents, over
// WS-Discovery multicast and HTTP with UsernameToken authentication) in
// front of GStreamer's RTSP server on the fixture clip; the store finds it
// with `custos camera discover`, adds it with `custos camera add --onvif`,
// and records it.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/onvif"
	"github.com/custos-cctv/custos/media/onvif/onviftest"
	"github.com/custos-cctv/custos/media/source/gsttest"
)

const (
	onvifUser     = "installer"
	onvifPassword = "Onvif-Pw-7731"
	onvifEndpoint = "urn:uuid:6c2f3a8e-0b7d-4c1e-9a55-2f00aa17c0de"
)

func TestNetnsOnvifDiscoverAndRecord(t *testing.T) {
	needNetns(t)
	mkv := gstClip(t)
	f := newNetFed(t)
	cam := f.lab.add("camera")
	// The lab's bridges snoop IGMP and, with no querier on the LAN, may
	// never learn the camera's membership: flood multicast, as a plain
	// switch does.
	f.lab.ip("-n", f.lab.hub, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
	for _, nd := range []*labNode{f.ns[f.store], cam} {
		f.lab.ip("-n", nd.linkNS, "link", "set", "br0", "type", "bridge", "mcast_snooping", "0")
	}

	// GStreamer's RTSP server listens on the camera namespace's loopback
	// (its script binds 127.0.0.1); the helper forwards the camera's :554.
	_, here, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(here), "..", "media", "source", "gsttest", "gst_rtsp_server.py")
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	gst := cam.command(ctx, gsttest.SystemPython, script, "8554", mkv)
	gst.Stderr = os.Stderr
	waitLine(t, gst, "READY", "GStreamer's RTSP server")

	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dev := exec.CommandContext(ctx, "ip", "netns", "exec", cam.ns, self)
	dev.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	dev.Env = append(os.Environ(), netnsHelperEnv+"=onvif", "ONVIF_ADDR="+cam.addr.String(), "ONVIF_RTSP_BACKEND=127.0.0.1:8554",
		"ONVIF_USER="+onvifUser, "ONVIF_PASSWORD="+onvifPassword, "ONVIF_ENDPOINT="+onvifEndpoint)
	dev.Stderr = os.Stderr
	waitLine(t, dev, "ready", "the fake ONVIF device")
	xaddr := "http://" + cam.addr.String() + "/onvif/device_service"

	// Discovery from the store's namespace, by multicast.
	out, errOut, err := f.runIn(f.store, 30*time.Second, "camera", "discover", "--dir", f.store.dir, "--timeout", "2s", "--json")
	if err != nil {
		t.Fatalf("camera discover: %v\n%s%s", err, out, errOut)
	}
	var res onvif.Result
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("camera discover --json: %v\n%s", err, out)
	}
	if len(res.Devices) != 1 || res.Devices[0].Endpoint != onvifEndpoint || res.Devices[0].Address != cam.addr ||
		len(res.Devices[0].XAddrs) != 1 || res.Devices[0].XAddrs[0] != xaddr || res.Devices[0].Name != "Front door" {
		t.Fatalf("camera discover found %+v (ignored %q)", res.Devices, res.Ignored)
	}
	table, _, err := f.runIn(f.store, 30*time.Second, "camera", "discover", "--dir", f.store.dir, "--timeout", "1s")
	if err != nil || !strings.Contains(table, cam.addr.String()) || !strings.Contains(table, xaddr) {
		t.Errorf("camera discover's table: %v\n%s", err, table)
	}
	f.logf("discovered %s at %s", onvifEndpoint, xaddr)

	// The password comes from the environment, never a flag.
	t.Setenv("CUSTOS_CAMERA_PASSWORD", onvifPassword)
	out, errOut, err = f.runIn(f.store, 60*time.Second, "camera", "add", "--site", "praha-1", "--name", "onvif-door",
		"--onvif", xaddr, "--user", onvifUser, "--purpose", "protection of property", "--dir", f.store.dir, "--as", f.admin)
	if err != nil {
		t.Fatalf("camera add --onvif: %v\n%s%s", err, out, errOut)
	}
	wantURL := "rtsp://" + cam.addr.String() + ":554/clip"
	if !strings.Contains(out, "profile Profile_1 (mainStream)") || !strings.Contains(out, wantURL) || strings.Contains(out+errOut, onvifPassword) {
		t.Errorf("camera add --onvif said:\n%s%s", out, errOut)
	}
	f.waitUntil(f.store, 90*time.Second, "the store recording the ONVIF camera", func() (bool, string) {
		st, err := f.netStatus(f.store)
		if err != nil || st.Recording == nil {
			return false, fmt.Sprint(err)
		}
		for _, c := range st.Recording.Cameras {
			if c.Camera == "praha-1/onvif-door" {
				return c.Segments >= 2, st.describeRecording()
			}
		}
		return false, st.describeRecording()
	})
	// The login stays on the store; the policy has the URL only.
	list := f.must(f.store, "camera", "list", "--dir", f.store.dir, "--json")
	if !strings.Contains(list, wantURL) || strings.Contains(list, onvifPassword) || strings.Contains(list, onvifUser) {
		t.Errorf("camera list:\n%s", list)
	}
	secrets := filepath.Join(f.store.dir, "camera-secrets.json")
	fi, err := os.Stat(secrets)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("camera-secrets.json: %v %v", fi, err)
	}
	b, _ := os.ReadFile(secrets)
	var kept map[string]struct{ User, Password string }
	if err := json.Unmarshal(b, &kept); err != nil || kept["praha-1/onvif-door"].User != onvifUser || kept["praha-1/onvif-door"].Password != onvifPassword {
		t.Errorf("the store keeps for praha-1/onvif-door %v (%v), want the ONVIF login", kept["praha-1/onvif-door"].User, err)
	}
	f.logf("the store records praha-1/onvif-door from %s", wantURL)
}

// gstClip skips unless GStreamer's RTSP server can run (as gsttest.Start
// does) and returns the fixture remuxed for it.
func gstClip(t *testing.T) string {
	t.Helper()
	probe := `import gi; gi.require_version("GstRtspServer", "1.0"); from gi.repository import GstRtspServer`
	if out, err := exec.Command(gsttest.SystemPython, "-c", probe).CombinedOutput(); err != nil {
		t.Skipf("needs GStreamer's RTSP server bindings (apt install gir1.2-gst-rtsp-server-1.0 python3-gi): %v\n%s", err, out)
	}
	ffmpeg, err := exec.LookPath("ffmpeg")
	if err != nil {
		t.Skip("needs ffmpeg")
	}
	tmp := t.TempDir()
	raw := filepath.Join(tmp, "clip.h264")
	if err := os.WriteFile(raw, clip.H264, 0o600); err != nil {
		t.Fatal(err)
	}
	mkv := filepath.Join(tmp, "clip.mkv")
	if out, err := exec.Command(ffmpeg, "-v", "error", "-r", strconv.Itoa(clip.FPS), "-i", raw, "-c", "copy", mkv).CombinedOutput(); err != nil {
		t.Fatalf("remux the clip: %v\n%s", err, out)
	}
	return mkv
}

// waitLine starts cmd and waits until it prints want on stdout.
func waitLine(t *testing.T, cmd *exec.Cmd, want, what string) {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", what, err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == want {
				ready <- true
				io.Copy(io.Discard, stdout)
				return
			}
		}
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("%s exited before it was ready", what)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s not ready within 30s", what)
	}
}

// runOnvifDevice is the fake camera, run inside its namespace: the ONVIF
// device and media services on ONVIF_ADDR:80, WS-Discovery on the multicast
// group, and RTSP on ONVIF_ADDR:554 forwarded to ONVIF_RTSP_BACKEND. It
// prints "ready" once all three listen, and runs until killed.
func runOnvifDevice() error {
	addr := os.Getenv("ONVIF_ADDR")
	d := &onviftest.Device{User: os.Getenv("ONVIF_USER"), Password: os.Getenv("ONVIF_PASSWORD"),
		Endpoint: os.Getenv("ONVIF_ENDPOINT"), RTSPURL: "rtsp://" + addr + ":554/clip"}
	web, err := net.Listen("tcp", net.JoinHostPort(addr, "80"))
	if err != nil {
		return err
	}
	go http.Serve(web, d)
	rtsp, err := net.Listen("tcp", net.JoinHostPort(addr, "554"))
	if err != nil {
		return err
	}
	go forward(rtsp, os.Getenv("ONVIF_RTSP_BACKEND"))
	eth0, err := net.InterfaceByName("eth0")
	if err != nil {
		return err
	}
	mc, err := net.ListenMulticastUDP("udp4", eth0, net.UDPAddrFromAddrPort(onvif.DiscoveryAddr))
	if err != nil {
		return err
	}
	fmt.Println("ready")
	d.ServeDiscovery(mc, "http://"+addr+"/onvif/device_service")
	return nil
}

// forward copies each connection on l to backend and back.
func forward(l net.Listener, backend string) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			b, err := net.Dial("tcp", backend)
			if err != nil {
				return
			}
			defer b.Close()
			go io.Copy(b, c)
			io.Copy(c, b)
		}()
	}
}
