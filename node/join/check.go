package join

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// Checking the token's signer. A joining node cannot know the federation's
// admins before its replica holds the policy, so DecodeToken checks only
// that the key the token carries made its signature. Once the replica
// holds this node's own membership (its redeem, hence the invite before
// it, is applied), checkJoin checks that key against the committed
// policy. A token signed by anyone else — a revoked admin, someone who
// never was one, or someone who re-signed a copied token with other
// datacenters — fails here: the node undoes its join and stops.

// CheckConfig is what the join check needs of the joined node.
type CheckConfig struct {
	Dir  string // the node's data directory
	Name string // the node's name, the actor of its audit entries
	Self string // the node's public key, as the policy names it
	// FederationFile is the node's file naming its federation, removed
	// with the join's own files when the join is undone.
	FederationFile string
	Policy         Policy
	Audit          Auditor
	Logf           func(format string, args ...any)
	// Fail stops the node for good because of err, then runs cleanup on
	// the stopped node; it returns at once.
	Fail func(err error, cleanup func())
	// Stop is closed when the node stops; Go runs f as one of the
	// goroutines the node waits for when it closes.
	Stop <-chan struct{}
	Go   func(f func())
}

// StartCheck starts checkJoin on a joined node whose token's signer
// was not yet checked against the policy.
func StartCheck(cfg CheckConfig) error {
	ji, err := ReadInfo(cfg.Dir)
	if err != nil || ji == nil || ji.Checked || ji.Invite == "" {
		return err
	}
	cfg.Go(func() { checkJoin(cfg, ji) })
	return nil
}

func checkJoin(cfg CheckConfig, ji *Info) {
	for {
		changed := cfg.Policy.Changed()
		done, err := verifyJoin(cfg.Policy.State(), cfg.Self, ji)
		if done && err == nil {
			ji.Checked = true
			if werr := writeInfo(cfg.Dir, ji); werr != nil {
				cfg.Logf("node: recording the join check: %v (it runs again at the next start)", werr)
			}
			cfg.Audit.Event(audit.Event{Actor: cfg.Name, Action: "join", Object: "invite " + ji.Invite, Decision: audit.Allow,
				Reason: "the token's signer " + ji.Signer + " made the invite and is a current admin"})
			return
		}
		if done {
			refuseJoin(cfg, ji, err)
			return
		}
		select {
		case <-cfg.Stop:
			return
		case <-changed:
		}
	}
}

// verifyJoin checks a joined node's token against the policy st. It is
// done once st holds the node (key self): until then the replica may lag.
func verifyJoin(st *policy.State, self string, ji *Info) (done bool, err error) {
	if st == nil || st.Federation == "" {
		return false, nil
	}
	name := st.NameOfKey(self)
	if name == "" {
		return false, nil
	}
	inv := st.Invites[ji.Invite]
	if inv == nil {
		return true, fmt.Errorf("the policy of federation %q holds no invite %q, the one the join token names", st.Federation, ji.Invite)
	}
	if inv.Name != name || string(inv.Role) != ji.Role {
		return true, fmt.Errorf("invite %q is for %s %q, but this node is %q and its token said %s", ji.Invite, inv.Role, inv.Name, name, ji.Role)
	}
	u := st.Users[inv.CreatedBy]
	if u == nil || u.Revoked || u.Role != policy.UserAdmin {
		return true, fmt.Errorf("invite %q was made by %q, who is not a current admin of federation %q", ji.Invite, inv.CreatedBy, st.Federation)
	}
	if !strings.EqualFold(u.Fingerprint, ji.Signer) {
		return true, fmt.Errorf("the join token was signed by key %s, not by admin %q (key %s) who made invite %q", ji.Signer, u.Name, u.Fingerprint, ji.Invite)
	}
	return true, nil
}

// refuseJoin undoes this node's join and stops it: the directory is
// marked refused first (RefusedFile), so that it stays refused whatever
// happens next; once the node is stopped, and nothing writes there any
// more, the directory loses its federation, token and last peers. The
// membership the redeem made stays in the policy until an admin revokes it;
// this node no longer uses it.
func refuseJoin(cfg CheckConfig, ji *Info, why error) {
	reason := why.Error()
	cfg.Logf("node: JOIN REFUSED: %s; undoing the join and stopping", reason)
	cfg.Audit.Event(audit.Event{Actor: cfg.Name, Action: "join", Object: "invite " + ji.Invite, Decision: audit.Deny, Reason: reason})
	b, _ := json.Marshal(refusal{Reason: reason, At: time.Now().UTC()})
	if err := writeFileAtomic(cfg.Dir, RefusedFile, b); err != nil {
		cfg.Logf("node: marking the join refused: %v", err)
	}
	dir, logf := cfg.Dir, cfg.Logf
	cfg.Fail(fmt.Errorf("node: %w: %s", ErrRefused, reason), func() {
		for _, f := range []string{cfg.FederationFile, InfoFile, LastPeersFile} {
			if err := os.Remove(filepath.Join(dir, f)); err != nil && !errors.Is(err, os.ErrNotExist) {
				logf("node: undoing the join: %v", err)
			}
		}
	})
}
