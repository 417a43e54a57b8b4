package source

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strings"
)

// Fingerprint names a certificate's public key: "sha256:" and the hex
// SHA-256 of its SubjectPublicKeyInfo. The key, not the whole
// certificate, so that a camera re-issuing its self-signed certificate
// for the same key (as many do on a date change or a firmware update)
// keeps its pin, while a new key — a replaced camera or a man in the
// middle — does not.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// ValidFingerprint reports whether s has Fingerprint's form.
func ValidFingerprint(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 {
		return false
	}
	_, err := hex.DecodeString(h)
	return err == nil && strings.ToLower(h) == h
}

// dialTLS connects to an rtsps camera and checks its certificate: against
// Options.TLS.RootCAs when given, else against the pin (learning it on
// first use). The presented fingerprint reaches Stats either way.
func (s *rtspSource) dialTLS(ctx context.Context) (net.Conn, error) {
	host, _, _ := net.SplitHostPort(s.hostport)
	cfg := &tls.Config{ServerName: host, MinVersion: tls.VersionTLS12}
	var changed error
	if ca := s.opt.TLS.RootCAs; ca != nil {
		cfg.RootCAs = ca
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			s.stats.setCert(Fingerprint(cs.PeerCertificates[0]))
			return nil
		}
	} else {
		// No chain to check: the pin is the whole of the trust.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("camera sent no certificate")
			}
			fp := Fingerprint(cs.PeerCertificates[0])
			s.stats.setCert(fp)
			if s.pin != "" && subtle.ConstantTimeCompare([]byte(fp), []byte(s.pin)) != 1 {
				changed = fmt.Errorf("%w: it presented %s, pinned is %s; if the change is expected (a new camera, a new key), re-pin with `custos camera add` (see README)",
					ErrCertChanged, fp, s.pin)
				return changed
			}
			return nil
		}
	}
	d := tls.Dialer{NetDialer: &net.Dialer{Timeout: s.opt.DialTimeout}, Config: cfg}
	conn, err := d.DialContext(ctx, "tcp", s.hostport)
	switch {
	case changed != nil:
		return nil, changed
	case err != nil && ctx.Err() == nil && !isDialError(err):
		return nil, fmt.Errorf("rtsp: %s: %w: %v", s.hostport, ErrTLS, err)
	case err != nil:
		return nil, fmt.Errorf("rtsp: dial %s: %w", s.hostport, err)
	}
	if s.pin == "" && s.opt.TLS.RootCAs == nil {
		fp := Fingerprint(conn.(*tls.Conn).ConnectionState().PeerCertificates[0])
		s.pin = fp
		s.log.Warn("camera certificate pinned on first use", "fingerprint", fp)
		if s.opt.TLS.OnPin != nil {
			if err := s.opt.TLS.OnPin(fp); err != nil {
				s.log.Error("could not keep the camera's pin; it holds until restart", "err", err)
			}
		}
	}
	return conn, nil
}

// isDialError tells a TCP connect failure from a TLS one.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
