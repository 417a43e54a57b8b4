package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/custos-cctv/custos/consensus"
	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/mesh"
	"github.com/custos-cctv/custos/node/membership"
	"github.com/custos-cctv/custos/node/policystore"
	"github.com/custos-cctv/custos/policy"
	"github.com/custos-cctv/custos/policy/audit"
)

// RaftPort is the mesh TCP port of consensus (Raft and forwarding).
const RaftPort = 7000

// maxClockSkew bounds a command's time against the leader's clock.
const maxClockSkew = 5 * time.Minute

// federationFile marks a data directory whose node takes its peers from the
// replicated policy, and names the federation.
const federationFile = "federation.json"

// federationFile holds the node's Anchor: the genesis it accepts.

// FederationOf returns the federation a data directory belongs to, or "" if
// it runs from a static peers file.
func FederationOf(dir string) (string, error) {
	a, err := readAnchor(dir)
	if a == nil {
		return "", err
	}
	return a.Federation, nil
}

func readAnchor(dir string) (*Anchor, error) {
	if err := joinWasRefused(dir); err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, federationFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	var a Anchor
	if err := json.Unmarshal(b, &a); err != nil || a.Federation == "" || a.AdminFP == "" || a.NodeKey == "" {
		return nil, fmt.Errorf("node: %s is damaged", filepath.Join(dir, federationFile))
	}
	return &a, nil
}

// InitOptions found a new federation on its first datacenter.
type InitOptions struct {
	Federation  string
	AdminName   string
	AdminPublic []byte // binary OpenPGP public key
	AdminFP     string
	// Recovery is the public half of the controller's recovery key
	// (armored or binary), made offline by custos recovery keygen. Its
	// private half never comes near a node: a datacenter that saw it would
	// hold two shares of every epoch key.
	Recovery []byte
}

// Init prepares dir as the first datacenter of a new federation. The node
// writes the genesis entry when it first starts (see startConsensus).
// Init also makes this datacenter's custodian key (DIR/custodian.key); the
// genesis names it and the recovery key's public half. Nothing Init makes
// or keeps is a secret of anyone but this datacenter.
func Init(cfg Config, opt InitOptions) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	if cfg.Listen.Addr().IsUnspecified() {
		return errors.New("node: --listen must be the address other nodes reach this datacenter at")
	}
	if len(opt.Recovery) == 0 {
		return errors.New("node: no recovery key: give the public half that custos recovery keygen made on the admin's machine (--recovery FILE.pub)")
	}
	rec, err := keys.NewCustodian("recovery", opt.Recovery)
	if err != nil {
		return fmt.Errorf("node: recovery key: %w", err)
	}
	if err := prepareDir(cfg.Dir); err != nil {
		return err
	}
	if fed, err := FederationOf(cfg.Dir); err != nil {
		return err
	} else if fed != "" {
		return fmt.Errorf("node: %s already belongs to federation %q", cfg.Dir, fed)
	}
	priv, _, err := keys.LoadOrCreateNodeKey(KeyPath(cfg.Dir))
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	pub := priv.Public()
	priv.Zero()
	custodian, err := makeCustodianKey(cfg.Dir, cfg.Name)
	if err != nil {
		return err
	}
	// Two shares on one host: the recovery key must not be this
	// datacenter's own custodian key (its custodian.key.pub given by
	// mistake, or a reused directory).
	if own, err := keys.NewCustodian("recovery", custodian); err != nil || own.Fingerprint() == rec.Fingerprint() {
		return errors.New("node: the recovery key given is this datacenter's own custodian key; make the recovery key with custos recovery keygen on the admin's machine")
	}
	g := &policy.Command{ID: "genesis", Time: time.Now().UTC(), Kind: policy.KindGenesis, Genesis: &policy.Genesis{
		Federation: opt.Federation,
		Admin:      policy.User{Name: opt.AdminName, Role: policy.UserAdmin, PublicKey: opt.AdminPublic, Fingerprint: opt.AdminFP},
		Node: policy.Node{Name: cfg.Name, PublicKey: pub.String(), Role: policy.RoleDatacenter, Jurisdiction: "EU",
			Endpoint: cfg.Listen.String(), Custodian: custodian},
		Recovery: rec.PublicKey(),
	}}
	// Check it now, so that a bad name or key fails here and not at start.
	var probe policy.State
	body, err := policy.EncodeCommand(g)
	if err != nil {
		return err
	}
	if _, err := probe.Apply(policy.Envelope{Body: body}); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	// Stored as a command; its time is set when the node first starts and
	// writes it, so that the leader's clock check accepts it.
	if err := os.WriteFile(filepath.Join(cfg.Dir, "genesis.json"), body, 0o600); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if err := writeNodeName(cfg.Dir, cfg.Name); err != nil {
		return err
	}
	b, _ := json.Marshal(Anchor{Federation: opt.Federation, AdminFP: opt.AdminFP, NodeKey: pub.String()})
	return os.WriteFile(filepath.Join(cfg.Dir, federationFile), b, 0o600)
}

// CustodianKeyPath is where a datacenter keeps its custodian key.
func CustodianKeyPath(dir string) string { return filepath.Join(dir, "custodian.key") }

// makeCustodianKey makes a datacenter's custodian key pair in dir (the
// private half only there, mode 0600) and returns the public half for the
// policy. An existing key (a retried join) is reused.
func makeCustodianKey(dir, name string) ([]byte, error) {
	path := CustodianKeyPath(dir)
	if k, err := keys.LoadCustodianKey(path); err == nil {
		defer k.Zero()
		return k.Custodian().PublicKey(), nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("node: custodian key: %w", err)
	}
	k, err := keys.NewCustodianKey(name)
	if err != nil {
		return nil, fmt.Errorf("node: custodian key: %w", err)
	}
	defer k.Zero()
	if err := keys.WriteCustodianKey(path, k); err != nil {
		return nil, fmt.Errorf("node: custodian key: %w", err)
	}
	return k.Custodian().PublicKey(), nil
}

// meshNetwork is consensus.Network on the mesh.
type meshNetwork struct{ m *mesh.Mesh }

func (n meshNetwork) Listen(port uint16) (net.Listener, error) { return n.m.ListenTCP(port) }
func (n meshNetwork) Dial(ctx context.Context, a netip.AddrPort) (net.Conn, error) {
	return n.m.DialTCP(ctx, a)
}

// admit lets a mesh address speak Raft with us only if it belongs to a live
// member of the policy we hold: fail closed, also before the first command.
// While the replica catches up (membership.CatchingUp: empty, or short of
// this node's own membership), the peers it last had, or the voters its
// admin-signed token named, may also bring it the log, unless the replica
// already names them as no live member: a partial replica may not yet
// name the leader.
func (n *Node) admit(remote netip.Addr) error {
	st := n.policy.State()
	now := n.now()
	for name, pn := range st.Nodes {
		pub, err := keys.ParseNodePublic(pn.PublicKey)
		if err != nil {
			continue
		}
		if n.mesh.AddrOf(pub) == remote {
			if policy.Member(st, name, now) {
				return nil
			}
			return fmt.Errorf("node %q is not a live member", name)
		}
	}
	if membership.CatchingUp(st, n.mesh.PublicKey().String()) {
		for _, p := range n.seed {
			if n.mesh.AddrOf(p.PublicKey) == remote {
				return nil
			}
		}
		return fmt.Errorf("%s: the policy replica is still catching up, and this is neither a last-known peer nor a voter from the join token", remote)
	}
	return fmt.Errorf("%s is no member of the policy", remote)
}

// vet runs on the leader before a command enters the log. The command's
// time must be near the leader's clock (DESIGN §6: chosen by the proposer,
// bounded by the leader), and the leader's replica must accept it
// (policy.State.Check, Apply's checks): a refused command would otherwise still take space in every replica's
// log and audit journal, and any member could fill them with junk. Every
// replica still checks it again when it is applied.
func (n *Node) vet(cmd []byte) error {
	env, err := policy.DecodeEnvelope(cmd)
	if err != nil {
		return err
	}
	if s := n.policy.Stalled(); s != nil {
		return fmt.Errorf("this leader cannot vet commands: %v", s)
	}
	// A command newer than this release is refused as such; one newer than
	// the first protocol waits until every member knows it (version.go).
	if kind, need := policy.Needs(env.Body); need > policy.Protocol {
		return &policy.NewerError{Kind: kind, Need: need}
	} else if need > 1 {
		if err := n.checkGate(kind, need); err != nil {
			return err
		}
	}
	c, err := policy.DecodeCommand(env.Body)
	if err != nil {
		return err
	}
	if d := time.Since(c.Time); d > maxClockSkew || d < -maxClockSkew {
		return fmt.Errorf("command time %s is more than %v from the leader's clock", c.Time.UTC().Format(time.RFC3339), maxClockSkew)
	}
	// Check is Apply's every check without the change, so the replica
	// that readers share needs no copy for it.
	_, err = n.policy.State().Check(env)
	return err
}

// startConsensus opens Raft over the mesh with the policy as its state
// machine; on a freshly initialised first datacenter it bootstraps the
// cluster and writes the genesis entry.
func (n *Node) startConsensus(pub keys.NodePublic) error {
	anchor, err := readAnchor(n.cfg.Dir)
	if err != nil {
		return err
	}
	n.policy = policystore.New(anchor)
	n.auditq = policystore.NewQueue(n.audit, n.logf)
	// Every command applied or refused here is journaled once, including
	// those that arrive in a snapshot and those Raft replays after a
	// restart (policystore/cmdaudit.go).
	ca, err := policystore.NewCmdAudit(n.audit, n.auditq)
	if err != nil {
		return fmt.Errorf("node: reading the audit journal: %w", err)
	}
	n.policy.OnApply, n.policy.OnRestore = ca.Record, ca.Restored
	n.raft, err = consensus.Open(consensus.Config{
		Dir:     n.cfg.Dir,
		ID:      pub.String(),
		Addr:    netip.AddrPortFrom(n.mesh.Addr(), RaftPort),
		Network: meshNetwork{n.mesh},
		Admit:   n.admit,
		FSM:     noticingFSM{n.policy, n.revs, n},
		Vet:     n.vet,
		Logf:    n.logf,
	})
	if err != nil {
		return fmt.Errorf("node: consensus: %w", err)
	}
	gpath := filepath.Join(n.cfg.Dir, "genesis.json")
	gbody, err := os.ReadFile(gpath)
	if errors.Is(err, os.ErrNotExist) {
		return nil // an existing member: its log holds everything
	}
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	err = n.raft.Bootstrap([]consensus.Server{{ID: pub.String(), Addr: netip.AddrPortFrom(n.mesh.Addr(), RaftPort)}})
	if err != nil && !errors.Is(err, consensus.ErrAlreadyBootstrapped) {
		return fmt.Errorf("node: bootstrap: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// After a crash between writing genesis and removing the file, the log
	// already holds it: catch up with the log before deciding.
	if err := n.raft.Sync(ctx); err != nil {
		return fmt.Errorf("node: catch up with the log: %w", err)
	}
	if n.policy.State().Federation == "" {
		g, err := policy.DecodeCommand(gbody)
		if err != nil {
			return fmt.Errorf("node: %s: %w", gpath, err)
		}
		g.Time = time.Now().UTC()
		body, err := policy.EncodeCommand(g)
		if err != nil {
			return err
		}
		out, err := n.raft.Submit(ctx, policy.Envelope{Body: body}.Marshal())
		if err != nil {
			return fmt.Errorf("node: write genesis: %w", err)
		}
		var r ApplyResult
		if json.Unmarshal(out, &r) != nil || !r.Applied {
			return fmt.Errorf("node: genesis refused: %s", r.Reason)
		}
	}
	return os.Remove(gpath)
}

// Submit sends a signed command through consensus and returns how the
// policy took it.
func (n *Node) Submit(ctx context.Context, env policy.Envelope) (ApplyResult, error) {
	if n.raft == nil {
		return ApplyResult{}, errors.New("this node runs from a static peers file, not a replicated policy")
	}
	out, err := n.raft.Submit(ctx, env.Marshal())
	// The leader changed while committing. Settle it: after a
	// linearizable read the command either was applied (its ID is in the
	// replay window) or never will be, and then submitting it again is
	// safe (a replay would be refused, not applied twice). Leaders can
	// change again meanwhile on a loaded machine; the loop ends with ctx,
	// or after maxSettle rounds.
	for attempt := 0; errors.Is(err, consensus.ErrOutcomeUnknown) && attempt < maxSettle; attempt++ {
		r, applied, serr := n.settleUnknown(ctx, env)
		if serr != nil {
			return ApplyResult{}, fmt.Errorf("%w (and settling it failed: %v)", err, serr)
		}
		if applied {
			return r, nil
		}
		out, err = n.raft.Submit(ctx, env.Marshal())
	}
	if errors.Is(err, consensus.ErrRejected) {
		// Refused before it entered the log (see vet): nothing changed
		// anywhere, so this node records the denied attempt.
		r := ApplyResult{Reason: err.Error()}
		if c, derr := policy.DecodeCommand(env.Body); derr == nil {
			r.ID, r.Kind = c.ID, c.Kind
			n.auditEvent(audit.Event{Actor: c.Signer, Action: "policy-change", Object: c.Kind + " " + c.ID, Decision: audit.Deny, Reason: err.Error()})
		}
		return r, nil
	}
	if err != nil {
		return ApplyResult{}, err
	}
	var r ApplyResult
	if err := json.Unmarshal(out, &r); err != nil {
		return ApplyResult{}, fmt.Errorf("node: bad apply result: %w", err)
	}
	if r.Applied {
		n.awaitLocal(ctx, r.ID)
	}
	return r, nil
}

// maxSettle bounds how often Submit settles and resubmits one command.
const maxSettle = 5

// localApplyWait bounds how long Submit waits for the local replica to
// apply the command the leader applied.
const localApplyWait = 5 * time.Second

// awaitLocal waits until the local replica has applied command id, or
// localApplyWait passed. Raft answers a submit once the leader applied it;
// a follower learns the commit with the next append, so without the wait
// a read here right after a write here (custos requests after custos
// request) could miss the write.
func (n *Node) awaitLocal(ctx context.Context, id string) {
	ctx, cancel := context.WithTimeout(ctx, localApplyWait)
	defer cancel()
	for {
		changed := n.policy.Changed()
		if _, ok := n.policy.State().Seen[id]; ok {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			n.logf("node: command %s was applied by the leader, not yet here after %v: a read here may not show it yet", id, localApplyWait)
			return
		}
	}
}

// settleUnknown reports whether a command whose outcome was unknown was in
// fact applied, once the local replica is current; an error means that
// could not be found out.
func (n *Node) settleUnknown(ctx context.Context, env policy.Envelope) (ApplyResult, bool, error) {
	c, err := policy.DecodeCommand(env.Body)
	if err != nil {
		return ApplyResult{}, false, err
	}
	st, err := n.syncPolicy(ctx)
	if err != nil {
		return ApplyResult{}, false, err
	}
	if _, applied := st.Seen[c.ID]; applied {
		n.logf("node: command %s %s: outcome was unknown after a leader change; it was applied", c.Kind, c.ID)
		return ApplyResult{ID: c.ID, Kind: c.Kind, Applied: true}, true, nil
	}
	return ApplyResult{}, false, nil
}

// Policy returns the local replica of the policy (nil without one).
func (n *Node) Policy() *policy.State {
	if n.policy == nil {
		return nil
	}
	return n.policy.State()
}
