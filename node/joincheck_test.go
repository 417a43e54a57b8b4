package node

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

// TestJoinTokenSignerCheckedAgainstPolicy: a token whose signature verifies
// against the key it carries, but whose key is no admin of the federation,
// is refused once the joining node holds the policy: the node undoes its
// join and stops, and its directory then refuses to start.
func TestJoinTokenSignerCheckedAgainstPolicy(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	mallory, err := keys.NewAdminKey("mallory", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	defer mallory.Close()

	// A real invite by alice, its token re-signed by mallory (who holds a
	// copy of it and wants the node to trust what she puts in it).
	now := time.Now()
	inv, err := MakeInvite(ctx, f.dc.cfg.Dir, f.admin, "alice", InviteSpec{Role: policy.RoleStore, Name: "store-praha-1", Site: "praha-1", Expires: now.Add(time.Hour)}, now)
	if err != nil {
		t.Fatal(err)
	}
	good, err := DecodeToken(inv.Token, now)
	if err != nil {
		t.Fatal(err)
	}
	if good.Signer() != f.admin.Fingerprint() {
		t.Fatalf("the token's signer is %s, want alice's key %s", good.Signer(), f.admin.Fingerprint())
	}
	forged := *good
	forged.AdminKey = mallory.PublicKey()
	s, err := EncodeToken(&forged, func(msg []byte) ([]byte, error) { return mallory.Sign(msg, now) })
	if err != nil {
		t.Fatal(err)
	}
	// Its signature checks out against the key it carries: that alone
	// proves nothing about who signed.
	tok, err := DecodeToken(s, now)
	if err != nil || tok.Signer() != mallory.Fingerprint() {
		t.Fatalf("a token re-signed by mallory: %v", err)
	}

	cfg := Config{Dir: filepath.Join(f.tmp, "store-praha-1"), Name: "store-praha-1", Listen: f.listen(), Logf: testLogf(t, "store")}
	res, err := PrepareJoin(ctx, cfg, tok)
	if err != nil || !res.Applied {
		t.Fatalf("join: %+v %v", res, err)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	// The node stops itself once its replica holds its membership.
	err = n.Run(ctx)
	if !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), "signed by key "+mallory.Fingerprint()) || !strings.Contains(err.Error(), `admin "alice"`) {
		t.Fatalf("the node ran on a token signed by a non-admin: %v (ctx: %v)", err, ctx.Err())
	}
	for _, gone := range []string{federationFile, joinFile, lastPeersFile} {
		if _, err := os.Stat(filepath.Join(cfg.Dir, gone)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left after the join was undone: %v", gone, err)
		}
	}
	if _, err := New(cfg); !errors.Is(err, ErrJoinRefused) || !strings.Contains(err.Error(), "empty directory") {
		t.Fatalf("restarting the refused node: %v", err)
	}
	if _, err := PrepareJoin(ctx, cfg, good); !errors.Is(err, ErrJoinRefused) {
		t.Fatalf("joining again in the refused directory: %v", err)
	}
}

// A good join records that its token's signer checked out, and does not
// check again at the next start.
func TestJoinTokenSignerCheckedOnce(t *testing.T) {
	checkLeaks(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f := foundAcme(t, ctx)
	n := joinAcme(t, ctx, f, InviteSpec{Role: policy.RoleStore, Name: "store-praha-1", Site: "praha-1"})
	waitTrue(t, 30*time.Second, "the store to check its token against the policy", func() bool {
		ji, err := readJoinInfo(n.cfg.Dir)
		return err == nil && ji != nil && ji.Checked
	})
	if err := n.Failure(); err != nil {
		t.Fatal(err)
	}
	ji, _ := readJoinInfo(n.cfg.Dir)
	if ji.Invite == "" || ji.Signer != f.admin.Fingerprint() {
		t.Fatalf("join info: %+v", ji)
	}
}
