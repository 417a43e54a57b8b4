package node

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
)

func FuzzDecodeToken(f *testing.F) {
	f.Add("custos1.eyJ2IjoxfQ.AAAA")
	f.Add("custos1..")
	f.Add("")
	now := time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := DecodeToken(s, now)
		if err == nil && (tok == nil || len(tok.Secret) != 32 || len(tok.Datacenters) == 0) {
			t.Fatalf("accepted an incomplete token %q", s)
		}
	})
}

// Every peer a token names, datacenter or other voter, must have a node key
// and a usable endpoint: a joining node admits them before it has a policy.
func TestDecodeTokenChecksPeers(t *testing.T) {
	admin, err := keys.NewAdminKey("alice", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	priv := keys.NewNodePrivate()
	key := priv.Public().String()
	priv.Zero()
	now := time.Now()
	mk := func(voters ...TokenPeer) string {
		tok := &Token{Version: 1, Anchor: Anchor{Federation: "acme", AdminFP: admin.Fingerprint(), NodeKey: key}, Invite: "inv-1",
			Secret: make([]byte, 32), Role: "store", Name: "store-1", Expires: now.Add(time.Hour),
			Datacenters: []TokenPeer{{Name: "dc-a", PublicKey: key, Endpoint: "192.0.2.1:51820"}}, Voters: voters, AdminKey: admin.PublicKey()}
		s, err := EncodeToken(tok, func(msg []byte) ([]byte, error) { return admin.Sign(msg, now) })
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tok, err := DecodeToken(mk(TokenPeer{Name: "witness", PublicKey: key, Endpoint: "192.0.2.2:51820"}), now)
	if err != nil || len(tok.Voters) != 1 || tok.Voters[0].Name != "witness" {
		t.Fatalf("a token naming a witness: %+v %v", tok, err)
	}
	for _, bad := range []struct {
		peer TokenPeer
		want string
	}{
		{TokenPeer{Name: "witness", PublicKey: "nodekey:zz", Endpoint: "192.0.2.2:51820"}, `voter "witness"`},
		{TokenPeer{Name: "witness", PublicKey: key, Endpoint: "0.0.0.0:51820"}, `voter "witness": endpoint`},
		{TokenPeer{Name: "witness", PublicKey: key, Endpoint: "192.0.2.2:0"}, `voter "witness": endpoint`},
		{TokenPeer{Name: "witness", PublicKey: key, Endpoint: "witness.example"}, `voter "witness": endpoint`},
	} {
		if _, err := DecodeToken(mk(bad.peer), now); !errors.Is(err, ErrBadToken) || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("voter %+v: %v, want an error naming %s", bad.peer, err, bad.want)
		}
	}
}
