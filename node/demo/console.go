package demo

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/netip"
	"path/filepath"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node/console"
)

// console opens the admins' browser console through admin-alice's node,
// with alice's key written for the demo under a one-time passphrase, and
// checks that its login page answers.
func (f *federation) console() (*console.Server, error) {
	var b [12]byte
	rand.Read(b[:])
	pass := base64.RawURLEncoding.EncodeToString(b[:])
	key := filepath.Join(f.dir, "alice.key")
	if err := keys.WriteAdminKey(key, f.admin, []byte(pass)); err != nil {
		return nil, err
	}
	c, err := console.Start(console.Config{Dir: filepath.Join(f.dir, "admin-alice"), KeyFile: key, Listen: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	resp, err := http.Get(c.URL() + "/login")
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("console: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		c.Close()
		return nil, fmt.Errorf("console: the login page answered %s", resp.Status)
	}
	f.say("\n== Console: the admins' browser UI, through admin-alice's node (login page answered in %v)", time.Since(t0).Round(time.Millisecond))
	f.say("   open %s and log in with the one-time passphrase %s (alice's key, written for this demo to %s)", c.URL(), pass, key)
	return c, nil
}
