package onvif

import (
	"context"
	"encoding/xml"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/onvif/onviftest"
)

const (
	testEndpoint = "urn:uuid:5f5a69c2-e0ae-504f-829b-00387a7c6cbf"
	testXAddr    = "http://192.0.2.10/onvif/device_service"
)

func loopbackUDP(t *testing.T) *net.UDPConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A probe (sent to the fake's unicast address here; the netns e2e test
// multicasts) finds the device once, although every probe is answered.
func TestProbeFindsTheDeviceOnce(t *testing.T) {
	dev := &onviftest.Device{Endpoint: testEndpoint}
	srv := loopbackUDP(t)
	go dev.ServeDiscovery(srv, testXAddr+" https://192.0.2.10/onvif/device_service")
	// A rogue answers every probe with a reply to another probe, a
	// malformed one and one without a usable XAddr.
	rogue := loopbackUDP(t)
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := rogue.ReadFromUDP(buf)
			if err != nil {
				return
			}
			var p struct {
				ID string `xml:"Header>MessageID"`
			}
			xml.Unmarshal(buf[:n], &p)
			rogue.WriteToUDP(onviftest.ProbeMatches("urn:uuid:00000000-0000-4000-8000-000000000000", "urn:uuid:rogue", testXAddr), from)
			rogue.WriteToUDP([]byte("<s:Envelope><unclosed"), from)
			rogue.WriteToUDP(onviftest.ProbeMatches(p.ID, "urn:uuid:ftp-only", "ftp://192.0.2.11/"), from)
		}
	}()
	cli, cli2 := loopbackUDP(t), loopbackUDP(t)
	// Two conns, as on a store with two interfaces: both probe, one answer.
	res, err := probe(context.Background(), []*net.UDPConn{cli}, srv.LocalAddr().(*net.UDPAddr), 700*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Devices) != 1 {
		t.Fatalf("devices = %+v", res.Devices)
	}
	d := res.Devices[0]
	if d.Endpoint != testEndpoint || d.Name != "Front door" || d.Hardware != "DS-2CD2143G2-I" || d.Location != "city/Praha" ||
		d.Address != netip.MustParseAddr("127.0.0.1") || len(d.XAddrs) != 2 || d.XAddrs[0] != testXAddr {
		t.Errorf("device = %+v", d)
	}
	res, err = probe(context.Background(), []*net.UDPConn{cli2}, rogue.LocalAddr().(*net.UDPAddr), 500*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Devices) != 0 {
		t.Errorf("the rogue's replies made devices: %+v", res.Devices)
	}
	ignored := strings.Join(res.Ignored, "\n")
	if !strings.Contains(ignored, "malformed XML") || !strings.Contains(ignored, "without an http(s) XAddr") || strings.Contains(ignored, "urn:uuid:rogue") {
		t.Errorf("ignored:\n%s", ignored)
	}
}

func TestParseProbeMatches(t *testing.T) {
	id := "urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"
	ids := map[string]bool{id: true}
	many := strings.Repeat("http://192.0.2.1/onvif/device_service ", 20)
	devs, err := ParseProbeMatches(onviftest.ProbeMatches(id, testEndpoint, many+" rtsp://192.0.2.1/ http://user:pw@192.0.2.1/"), ids)
	if err != nil {
		t.Fatal(err)
	}
	if len(devs) != 1 || len(devs[0].XAddrs) != MaxXAddrs {
		t.Errorf("XAddrs = %d, want %d", len(devs[0].XAddrs), MaxXAddrs)
	}
	if _, err := ParseProbeMatches(onviftest.ProbeMatches("urn:uuid:other", testEndpoint, testXAddr), ids); !errors.Is(err, errNotOurs) {
		t.Errorf("wrong RelatesTo: %v", err)
	}
	// Our own probe, looped back to us, is no match.
	if _, err := ParseProbeMatches(probeMessage(id, "dn:NetworkVideoTransmitter"), ids); !errors.Is(err, errNotOurs) {
		t.Errorf("our probe: %v", err)
	}
	if _, err := ParseProbeMatches(onviftest.ProbeMatches(id, "", testXAddr), ids); err == nil || !strings.Contains(err.Error(), "endpoint reference") {
		t.Errorf("no endpoint: %v", err)
	}
	if _, err := ParseProbeMatches([]byte(`<a>`), ids); err == nil || !strings.Contains(err.Error(), "malformed XML") {
		t.Errorf("malformed: %v", err)
	}
	big := make([]byte, MaxReply+1)
	if _, err := ParseProbeMatches(big, ids); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("oversized: %v", err)
	}
	col := newCollector(ids)
	col.add(big, netip.MustParseAddr("192.0.2.3"))
	if len(col.res.Ignored) != 1 || !strings.Contains(col.res.Ignored[0], "192.0.2.3: a reply larger than 65536 bytes") {
		t.Errorf("ignored = %q", col.res.Ignored)
	}
}

// MaxDevices bounds what one discovery keeps.
func TestCollectorBoundsDevices(t *testing.T) {
	id := "urn:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"
	col := newCollector(map[string]bool{id: true})
	for i := range MaxDevices + 10 {
		col.add(onviftest.ProbeMatches(id, newUUID(), testXAddr), netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}))
	}
	if r := col.result(); len(r.Devices) != MaxDevices || !strings.Contains(strings.Join(r.Ignored, ""), "more than 256 devices") {
		t.Errorf("%d devices, ignored %q", len(r.Devices), r.Ignored)
	}
}
