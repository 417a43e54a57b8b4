package source

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

// testCert makes a self-signed certificate for 127.0.0.1.
func testCert(t testing.TB) (tls.Certificate, *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "camera"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, cert
}

func TestRTSPSTrustOnFirstUse(t *testing.T) {
	fx := loadFixture(t)
	tc, cert := testCert(t)
	cam := &testCamera{t: t, fx: fx, tlsCert: &tc, auth: "digest", user: "admin", pass: testPass}
	var mu sync.Mutex
	var pinned []string
	// UDP asked for, but rtsps interleaves on the TLS connection.
	src, err := Open(cam.url("admin", testPass), Options{Transport: TransportUDP, TLS: TLSOptions{OnPin: func(fp string) error {
		mu.Lock()
		defer mu.Unlock()
		pinned = append(pinned, fp)
		return nil
	}}})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	run(t, src, c)
	waitFor(t, 10*time.Second, "60 frames over TLS", func() bool { return c.len() >= 60 })
	frames, _ := c.snapshot()
	checkStream(t, fx, frames, [2]int{})
	want := Fingerprint(cert)
	mu.Lock()
	defer mu.Unlock()
	if len(pinned) != 1 || pinned[0] != want {
		t.Errorf("OnPin got %v, want once %s", pinned, want)
	}
	if st := src.Stats(); st.Transport != "tls" || st.CertFingerprint != want {
		t.Errorf("Stats = %+v, want tls and %s", st, want)
	}
}

// A pinned camera that shows another key stops for good, with an error
// that names both fingerprints; it is not retried.
func TestRTSPSPinMismatch(t *testing.T) {
	fx := loadFixture(t)
	tc, cert := testCert(t)
	_, other := testCert(t)
	cam := &testCamera{t: t, fx: fx, tlsCert: &tc}
	src, err := Open(cam.url("", ""), Options{TLS: TLSOptions{Pin: Fingerprint(other),
		OnPin: func(string) error { t.Error("OnPin called for a pinned camera"); return nil }}})
	if err != nil {
		t.Fatal(err)
	}
	c := &collector{}
	_, result := run(t, src, c)
	err = result()
	if !errors.Is(err, ErrCertChanged) {
		t.Fatalf("Run = %v, want ErrCertChanged", err)
	}
	st := src.Stats()
	if st.State != StateFailed || st.CertFingerprint != Fingerprint(cert) || st.Reconnects != 0 ||
		!strings.Contains(st.LastError, Fingerprint(cert)) || !strings.Contains(st.LastError, Fingerprint(other)) {
		t.Errorf("Stats = %+v, want failed naming both fingerprints", st)
	}
	if c.len() != 0 || cam.conns.Load() != 1 {
		t.Errorf("%d frames over %d connections from a camera with the wrong key", c.len(), cam.conns.Load())
	}
}

func TestRTSPSCertificateAuthority(t *testing.T) {
	fx := loadFixture(t)
	tc, cert := testCert(t)
	_, other := testCert(t)
	for _, tt := range []struct {
		name string
		ca   *x509.Certificate
		ok   bool
	}{{"right CA", cert, true}, {"wrong CA", other, false}} {
		t.Run(tt.name, func(t *testing.T) {
			cam := &testCamera{t: t, fx: fx, tlsCert: &tc}
			pool := x509.NewCertPool()
			pool.AddCert(tt.ca)
			src, err := Open(cam.url("", ""), Options{TLS: TLSOptions{RootCAs: pool}, Backoff: Backoff{Initial: 20 * time.Millisecond}})
			if err != nil {
				t.Fatal(err)
			}
			c := &collector{}
			cancel, result := run(t, src, c)
			if tt.ok {
				waitFor(t, 10*time.Second, "30 frames", func() bool { return c.len() >= 30 })
			} else {
				waitFor(t, 10*time.Second, "2 reconnects", func() bool { return src.Stats().Reconnects >= 2 })
				if st := src.Stats(); !strings.Contains(st.LastError, ErrTLS.Error()) || c.len() != 0 {
					t.Errorf("Stats = %+v, %d frames; want a TLS error and no frames", st, c.len())
				}
			}
			cancel()
			if err := result(); !errors.Is(err, context.Canceled) {
				t.Errorf("Run = %v", err)
			}
		})
	}
}
