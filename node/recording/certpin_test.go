package recording

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy/audit"
)

// An rtsps camera is pinned on first use (kept in camera-secrets.json,
// audited); when it later shows another key its recording stops with an
// audit alarm and the fingerprint in its status; camera add again
// (SetCameraSecret) re-pins it. The "camera" only completes TLS
// handshakes: the pin is all this test is about.
func TestRecorderPinsCameraCertificate(t *testing.T) {
	nodetest.CheckLeaks(t)
	certA, fpA := pinTestCert(t)
	certB, fpB := pinTestCert(t)
	var cur atomic.Pointer[tls.Certificate]
	cur.Store(&certA)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return cur.Load(), nil }})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.(*tls.Conn).Handshake()
			c.Close()
		}
	}()

	st := testState(t)
	st.Cameras["praha-1/entrance"].Source = "rtsps://" + ln.Addr().String() + "/stream"
	delete(st.Cameras, "brno-1/door")
	p := nodetest.NewPolicy(st)
	j := &nodetest.Journal{}
	d := testDeps(t, p, j)
	const cam = "praha-1/entrance"
	if err := SetCameraSecret(d, st, cam, CameraSecret{}); err != nil { // camera add of an rtsps camera
		t.Fatal(err)
	}
	r, err := Start(Config{MinFree: -1}, d)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	pinned := func() string {
		m, err := loadCameraSecrets(d.Dir)
		if err != nil {
			t.Fatal(err)
		}
		return m[cam].Pin
	}
	nodetest.WaitTrue(t, 10*time.Second, "the first key pinned", func() bool { return pinned() == fpA })
	if es := j.Of("camera-certificate-pinned"); len(es) != 1 || !strings.Contains(es[0].Reason, fpA) {
		t.Errorf("audit of the pin: %+v", es)
	}

	cur.Store(&certB)
	nodetest.WaitTrue(t, 20*time.Second, "the alarm", func() bool { return len(j.Of("camera-certificate-changed")) == 1 })
	if e := j.Of("camera-certificate-changed")[0]; e.Decision != audit.Deny || !strings.Contains(e.Reason, fpB) || !strings.Contains(e.Reason, fpA) {
		t.Errorf("alarm %+v, want a denial naming both fingerprints", e)
	}
	s := r.Status().Cameras[0]
	if s.CertFingerprint != fpB || !strings.Contains(s.SourceError, source.ErrCertChanged.Error()) || pinned() != fpA {
		t.Errorf("status %+v, pin %s; want the new fingerprint shown, the old one kept", s, pinned())
	}

	if err := SetCameraSecret(d, st, cam, CameraSecret{}); err != nil { // the operator re-pins
		t.Fatal(err)
	}
	r.Nudge()
	nodetest.WaitTrue(t, 10*time.Second, "the new key pinned", func() bool { return pinned() == fpB })
}

func pinTestCert(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "camera"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, source.Fingerprint(c)
}
