package recording

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/custos-cctv/custos/media/source"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// Camera credentials are secrets of the store that records the camera: they
// live only in its data directory (camera-secrets.json, mode 0600), never in
// the policy, the Raft log, a log line or a status. `custos camera add`
// hands them to the running store over its owner-only socket.

const camSecretsFile = "camera-secrets.json"

// CameraSecret is a camera's RTSP login and the store-only settings that
// go with it: how RTP travels, and how an rtsps camera is trusted. They
// live here rather than in the policy because they are about reaching the
// camera from this store (and a pin or CA is nobody else's business), and
// rather than in the URL because its query and fragment are the camera's.
type CameraSecret struct {
	User     string `json:"user"`
	Password string `json:"password"`
	// Transport: "tcp" (or ""), "udp" or "auto" (source.Transport).
	Transport string `json:"transport,omitempty"`
	// CA is PEM: an rtsps camera's chain must verify against it. Without
	// it the camera's key is pinned instead.
	CA string `json:"ca,omitempty"`
	// Pin is the certificate fingerprint (source.Fingerprint) an rtsps
	// camera must present: given by the operator, or learned on first use.
	Pin string `json:"pin,omitempty"`
	// SetAt is when `custos camera add` last set these. A new value
	// restarts the camera's recording, which is how a re-pin takes effect
	// on a camera stopped by a certificate change.
	SetAt time.Time `json:"set_at,omitzero"`
}

// String never shows the password.
func (s CameraSecret) String() string { return s.User + ":[redacted]" }

// GoString, so that %#v does not show it either.
func (s CameraSecret) GoString() string { return s.String() }

var camSecretsMu sync.Mutex // serializes read-modify-write of the file

// loadCameraSecrets reads dir's camera credentials (none if the file is
// absent). The file must be a regular file of ours, readable by us only.
func loadCameraSecrets(dir string) (map[string]CameraSecret, error) {
	path := filepath.Join(dir, camSecretsFile)
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]CameraSecret{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: camera secrets: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("node: camera secrets: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("node: %s must be a regular file of mode 0600 (it is %v): fix it with chmod 600", path, fi.Mode())
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return nil, fmt.Errorf("node: %s belongs to uid %d, not to this node's user", path, st.Uid)
	}
	var m map[string]CameraSecret
	dec := json.NewDecoder(f)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		// The decoder's error may quote the file; it never reaches a log.
		return nil, fmt.Errorf("node: %s is not valid camera secrets JSON", path)
	}
	if m == nil {
		m = map[string]CameraSecret{}
	}
	return m, nil
}

// saveCameraSecret sets (or with an empty user, removes) one camera's
// credentials: temporary file, fsync, rename, fsync of the directory.
func saveCameraSecret(dir, camera string, s CameraSecret) error {
	camSecretsMu.Lock()
	defer camSecretsMu.Unlock()
	m, err := loadCameraSecrets(dir)
	if err != nil {
		return err
	}
	if s == (CameraSecret{}) {
		delete(m, camera)
	} else {
		m[camera] = s
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, ".camera-secrets-*")
	if err != nil {
		return fmt.Errorf("node: camera secrets: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("node: camera secrets: %w", err)
	}
	_, err = tmp.Write(b)
	clear(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), filepath.Join(dir, camSecretsFile))
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("node: camera secrets: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// SplitCredentials returns a source URL without its user:password part, and
// that part. Only rtsp URLs carry credentials.
func SplitCredentials(src string) (clean string, s CameraSecret, err error) {
	u, err := url.Parse(src)
	if err != nil {
		return "", CameraSecret{}, errors.New("source is not a URL (want rtsp://[USER:PASS@]HOST[:PORT]/PATH or synthetic:)")
	}
	if u.User == nil {
		return src, CameraSecret{}, nil
	}
	s.User = u.User.Username()
	s.Password, _ = u.User.Password()
	u.User = nil
	return u.String(), s, nil
}

// credentials are s as the RTSP client takes them: apart from the URL, so
// that no string holding them (a URL with userinfo) is ever formatted.
func (s CameraSecret) credentials() source.Credentials {
	return source.Credentials{User: s.User, Password: s.Password}
}

// SetCameraSecret keeps a camera's credentials and settings on this node,
// which must be the store of the camera's site: nowhere else records it, so
// nowhere else may hold them. They replace what was kept, except that
// without a user the credentials kept stay (camera add without them in the
// URL); the pin is cleared unless given, so the camera is pinned again on
// first use. st is the node's policy (nil
// when it runs from a static peers file); a running Recorder follows the
// change once told (Recorder.Nudge).
func SetCameraSecret(d Deps, st *policy.State, camera string, s CameraSecret) error {
	if st == nil {
		return errors.New("this node runs from a static peers file and records no cameras")
	}
	me := st.Nodes[d.SelfName(st)]
	site, _, ok := strings.Cut(camera, "/")
	if !ok {
		return fmt.Errorf("camera %q: want SITE/NAME", camera)
	}
	if me == nil || me.Role != policy.RoleStore || me.Site != site {
		return fmt.Errorf("camera credentials are kept only on the store of site %q, and this node is not it: run the command with that store's --dir", site)
	}
	if _, err := source.ParseTransport(s.Transport); err != nil {
		return err
	}
	if s.Pin != "" && !source.ValidFingerprint(s.Pin) {
		return fmt.Errorf("pin %.80q is not a sha256:HEX fingerprint as `custos cameras` shows it", s.Pin)
	}
	if s.CA != "" {
		if _, err := certPool(s.CA); err != nil {
			return err
		}
	}
	camSecretsMu.Lock()
	old, err := loadCameraSecrets(d.Dir)
	camSecretsMu.Unlock()
	if err != nil {
		return err
	}
	if s.User == "" {
		s.User, s.Password = old[camera].User, old[camera].Password
	}
	if s.SetAt.IsZero() {
		s.SetAt = time.Now().UTC()
	}
	if err := saveCameraSecret(d.Dir, camera, s); err != nil {
		return err
	}
	reason := "set on this store only"
	switch {
	case s.Pin != "":
		reason += "; certificate pinned to " + s.Pin
	case s.CA != "":
		reason += "; certificate verified against a CA"
	}
	d.Audit.Event(audit.Event{Actor: "local-admin", Action: "camera-credentials", Object: camera, Decision: audit.Allow, Reason: reason})
	return nil
}

// learnCameraPin keeps the fingerprint an rtsps camera presented on first
// use, unless the settings changed since the recording started (setAt) or
// a pin is kept already: a learned pin never replaces one.
func learnCameraPin(dir, camera string, setAt time.Time, fp string) error {
	camSecretsMu.Lock()
	m, err := loadCameraSecrets(dir)
	camSecretsMu.Unlock()
	if err != nil {
		return err
	}
	s := m[camera]
	if !s.SetAt.Equal(setAt) || s.Pin != "" {
		return errors.New("the camera's settings changed meanwhile; not pinned")
	}
	s.Pin = fp
	return saveCameraSecret(dir, camera, s)
}

// certPool parses a PEM CA bundle.
func certPool(pem string) (*x509.CertPool, error) {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM([]byte(pem)) {
		return nil, errors.New("the CA file holds no PEM certificate")
	}
	return p, nil
}

// options are s as the RTSP client takes them. onPin keeps a pin learned
// on first use.
func (s CameraSecret) options(onPin func(string) error) (source.Options, error) {
	o := source.Options{Credentials: s.credentials(), Transport: source.Transport(s.Transport)}
	if s.CA != "" {
		p, err := certPool(s.CA)
		if err != nil {
			return o, err
		}
		o.TLS.RootCAs = p
	} else {
		o.TLS.Pin, o.TLS.OnPin = s.Pin, onPin
	}
	return o, nil
}
