package main

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"testing"

	"github.com/custos-cctv/custos/media/onvif"
	"github.com/custos-cctv/custos/media/onvif/onviftest"
	"github.com/custos-cctv/custos/node/recording"
)

const camPassword = "Kamera-heslo-42"

// --onvif resolves the camera's URL; the store is to keep the ONVIF login
// (the URL has none), and neither the output nor the URL shows the password.
func TestOnvifSource(t *testing.T) {
	dev := &onviftest.Device{User: "installer", Password: camPassword, RTSPURL: "rtsp://192.0.2.7:554/Streaming/Channels/102"}
	xaddr := onviftest.Start(t, dev)
	t.Setenv("CUSTOS_CAMERA_PASSWORD", camPassword)
	var out bytes.Buffer
	clean, secret, err := onvifSource(context.Background(), xaddr, "installer", "subStream", &out)
	if err != nil {
		t.Fatal(err)
	}
	if clean != dev.RTSPURL || secret != (recording.CameraSecret{User: "installer", Password: camPassword}) {
		t.Errorf("source %q, secret %v", clean, secret)
	}
	if !strings.Contains(out.String(), "HIKVISION DS-2CD2143G2-I, profile Profile_2 (subStream) H264 640x360@25: "+dev.RTSPURL) ||
		strings.Contains(out.String(), camPassword) {
		t.Errorf("output: %s", out.String())
	}
}

// A URL that carries its own login keeps it, split off the URL.
func TestOnvifSourceWithCredentialsInTheURL(t *testing.T) {
	dev := &onviftest.Device{User: "installer", Password: camPassword, RTSPURL: "rtsp://viewer:view-pw@192.0.2.7/live"}
	xaddr := onviftest.Start(t, dev)
	t.Setenv("CUSTOS_CAMERA_PASSWORD", camPassword)
	var out bytes.Buffer
	clean, secret, err := onvifSource(context.Background(), xaddr, "installer", "", &out)
	if err != nil {
		t.Fatal(err)
	}
	if clean != "rtsp://192.0.2.7/live" || secret != (recording.CameraSecret{User: "viewer", Password: "view-pw"}) {
		t.Errorf("source %q, secret %v", clean, secret)
	}
	if strings.Contains(out.String(), "view-pw") {
		t.Errorf("output shows the URL's password: %s", out.String())
	}
}

func TestOnvifSourceErrors(t *testing.T) {
	dev := &onviftest.Device{User: "installer", Password: camPassword, RTSPURL: "rtsp://192.0.2.7/live"}
	xaddr := onviftest.Start(t, dev)
	t.Setenv("CUSTOS_CAMERA_PASSWORD", "not-"+camPassword)
	_, _, err := onvifSource(context.Background(), xaddr, "installer", "", new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), "wrong user or password") || strings.Contains(err.Error(), camPassword) {
		t.Errorf("wrong password: %v", err)
	}
	t.Setenv("CUSTOS_CAMERA_PASSWORD", camPassword)
	_, _, err = onvifSource(context.Background(), xaddr, "installer", "fourthStream", new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), "Profile_1 (mainStream) H264 2560x1440@25") {
		t.Errorf("unknown profile: %v", err)
	}
}

func TestCameraAddOnvifFlags(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"--source", "synthetic:", "--onvif", "http://192.0.2.7/onvif/device_service"},
		{},
		{"--source", "synthetic:", "--user", "admin"},
		{"--source", "synthetic:", "--rtsp-user", "recorder"},
	} {
		args = append([]string{"camera", "add", "--site", "s", "--name", "n", "--purpose", "p", "--dir", dir, "--as", "k"}, args...)
		if code, _, errOut := runCLI(args...); code != 2 || !strings.Contains(errOut, "--onvif") {
			t.Errorf("custos %s: exit %d, %s", strings.Join(args, " "), code, errOut)
		}
	}
}

// discover runs only beside a store: a directory with no node is refused
// with what it needs.
func TestCameraDiscoverNeedsAStore(t *testing.T) {
	code, _, errOut := runCLI("camera", "discover", "--dir", t.TempDir())
	if code == 0 || !strings.Contains(errOut, "discovery runs on a store") {
		t.Errorf("exit %d, %s", code, errOut)
	}
}

func TestWriteDiscovered(t *testing.T) {
	var b strings.Builder
	writeDiscovered(&b, []onvif.Device{{Address: netip.MustParseAddr("10.0.0.7"), Endpoint: "urn:uuid:5f5a69c2", Name: "Front door",
		Hardware: "DS-2CD2143G2-I", XAddrs: []string{"http://10.0.0.7/onvif/device_service"}}})
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != 2 || strings.Join(strings.Fields(lines[0]), " ") != "ADDRESS NAME HARDWARE XADDR ENDPOINT" ||
		!strings.HasPrefix(lines[1], "10.0.0.7") || !strings.Contains(lines[1], "Front door  DS-2CD2143G2-I  http://10.0.0.7/onvif/device_service  urn:uuid:5f5a69c2") {
		t.Errorf("table:\n%s", b.String())
	}
}
