package media

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/media/source/gsttest"
)

// TestRealRTSPServers records from servers nobody here wrote, over each
// transport and login Custos speaks, through a real Recorder whose
// segments must decode in ffprobe. Tens of seconds in real time: `make
// e2e` runs it (CUSTOS_RTSP_E2E=1); `make test` runs only the TCP one
// (TestRecordFromGStreamer).
func TestRealRTSPServers(t *testing.T) {
	if os.Getenv("CUSTOS_RTSP_E2E") == "" {
		t.Skip("real-server RTSP variants run under make e2e (CUSTOS_RTSP_E2E=1)")
	}
	const user, pass = "admin", "s3cret-Pass"

	t.Run("GStreamer UDP, Digest, 2 s session timeout", func(t *testing.T) {
		srv := gsttest.StartWith(t, gsttest.Config{Protocols: "both", Auth: "digest", User: user, Password: pass, SessionTimeout: 2})
		src, err := source.Open(srv.URL, source.Options{Transport: source.TransportUDP,
			Credentials: source.Credentials{User: user, Password: pass}, ReadTimeout: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		// 8 s of video: four session timeouts. GStreamer does not expire
		// a session while its client is connected, so count the
		// keep-alives, one per second (timeout/2).
		st := recordFromRTSP(t, "GStreamer over UDP", src, 8*clip.FPS, true)
		if st.Transport != "udp" || st.PacketsLost != 0 || srv.Expired() != 0 || srv.KeepAlives() < 5 {
			t.Errorf("transport %q, %d packets lost, %d sessions expired, %d keep-alives; want udp, none, none, about 8",
				st.Transport, st.PacketsLost, srv.Expired(), srv.KeepAlives())
		}
	})

	t.Run("GStreamer TCP only, transport auto", func(t *testing.T) {
		srv := gsttest.StartWith(t, gsttest.Config{Protocols: "tcp"})
		src, err := source.Open(srv.URL, source.Options{Transport: source.TransportAuto})
		if err != nil {
			t.Fatal(err)
		}
		st := recordFromRTSP(t, "GStreamer with auto transport", src, 3*clip.FPS, true)
		if st.Transport != "tcp" || !st.FellBack {
			t.Errorf("transport %q, fell back %v; want tcp after the camera refused UDP", st.Transport, st.FellBack)
		}
	})

	t.Run("GStreamer rtsps, Basic, pinned on first use", func(t *testing.T) {
		pemBytes, fp := selfSigned(t)
		srv := gsttest.StartWith(t, gsttest.Config{Auth: "basic", User: user, Password: pass, TLS: pemBytes})
		var mu sync.Mutex
		var pinned string
		src, err := source.Open(srv.URL, source.Options{Credentials: source.Credentials{User: user, Password: pass},
			TLS: source.TLSOptions{OnPin: func(f string) error { mu.Lock(); pinned = f; mu.Unlock(); return nil }}})
		if err != nil {
			t.Fatal(err)
		}
		st := recordFromRTSP(t, "GStreamer over TLS", src, 3*clip.FPS, true)
		mu.Lock()
		defer mu.Unlock()
		if st.Transport != "tls" || st.CertFingerprint != fp || pinned != fp {
			t.Errorf("transport %q, fingerprint %q, pinned %q; want tls and %s", st.Transport, st.CertFingerprint, pinned, fp)
		}
	})

	t.Run("VLC over UDP", func(t *testing.T) {
		url := gsttest.StartVLC(t)
		src, err := source.Open(url, source.Options{Transport: source.TransportUDP})
		if err != nil {
			t.Fatal(err)
		}
		st := recordFromRTSP(t, "VLC", src, 3*clip.FPS, true)
		if st.Transport != "udp" {
			t.Errorf("transport %q, want udp", st.Transport)
		}
	})
}

// selfSigned returns a certificate and key for 127.0.0.1 in PEM, and the
// certificate's fingerprint.
func selfSigned(t *testing.T) ([]byte, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "camera"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	var b strings.Builder
	_ = pem.Encode(&b, &pem.Block{Type: "CERTIFICATE", Bytes: der})
	_ = pem.Encode(&b, &pem.Block{Type: "PRIVATE KEY", Bytes: pk})
	return []byte(b.String()), source.Fingerprint(cert)
}
