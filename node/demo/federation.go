package demo

import (
	"context"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/ts"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/node/membership"
	"github.com/custos-cctv/custos/node/recording"
	"github.com/custos-cctv/custos/policy"
)

// runFederation founds a federation on this machine: dc-a, then dc-b,
// a witness, two stores and an admin node join with invite tokens; an
// installer joins one store for a short window and is dropped at its end by
// every node's own clock; a revoked store is cut off. It prints each step
// and the cluster's status.
func runFederation(ctx context.Context, w io.Writer, dir string, logf func(string, ...any), hold func()) error {
	admin, err := keys.NewAdminKey("alice", time.Now().Add(-time.Minute))
	if err != nil {
		return err
	}
	defer admin.Close()
	f := &federation{ctx: ctx, w: w, dir: dir, logf: logf, admin: admin, nodes: map[string]*node.Node{}}
	defer f.close()

	f.say("\n== Federation demo: Raft over the mesh, joining by invite (data in %s)", dir)
	if err := f.found(); err != nil {
		return err
	}
	if err := f.joinAll(); err != nil {
		return err
	}
	if err := f.recordings(); err != nil {
		return err
	}
	f.paths()
	drop, err := f.installerJoins()
	if err != nil {
		return err
	}
	defer drop.stop()
	for _, step := range []func() error{f.replication, f.live, func() error { return f.installerEnds(drop) }, f.revoke} {
		if err := step(); err != nil {
			return err
		}
	}
	f.laterRecordings()
	if err := f.release(); err != nil {
		return err
	}
	if err := f.documents(); err != nil {
		return err
	}
	if err := f.auditQuery(); err != nil {
		return err
	}
	f.raftStatus()
	c, err := f.console()
	if err != nil {
		return err
	}
	defer c.Close()
	hold()
	return nil
}

// federation is the second part of the demo: nodes that join by invite
// and follow the policy their Raft cluster agrees on. Its steps share the
// first admin's key and submit her commands through dc-a.
type federation struct {
	ctx   context.Context
	w     io.Writer
	dir   string
	logf  func(string, ...any) // nodes' logs, nil to drop them
	admin *keys.AdminKey       // alice's, the first admin
	fid   string               // the federation's ID, once dc-a is founded
	nodes map[string]*node.Node
}

func (f *federation) say(format string, a ...any) { fmt.Fprintf(f.w, format+"\n", a...) }

func (f *federation) close() {
	for _, n := range f.nodes {
		n.Close()
	}
}

// listen picks a free UDP port on the loopback for a node's WireGuard.
func listen() (netip.AddrPort, error) {
	p, err := nodetest.FreeUDPPort()
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), p), err
}

// start starts the node name, already initialised or joined, into f.nodes.
func (f *federation) start(name string, ap netip.AddrPort) error {
	// Short segments, so the demo shows them accumulate.
	var nlogf func(string, ...any)
	if f.logf != nil {
		nlogf = func(format string, a ...any) { f.logf(name+": "+format, a...) }
	}
	n, err := node.New(node.Config{Dir: filepath.Join(f.dir, name), Name: name, Listen: ap, Logf: nlogf,
		Recording: recording.Config{Segment: ts.Config{Target: 2 * time.Second}}})
	if err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	f.nodes[name] = n
	return nil
}

// submit signs c as alice and has dc-a apply it; a refusal is an error.
func (f *federation) submit(c *policy.Command) error {
	env, err := node.SignCommand(f.admin, f.fid, "alice", c)
	if err != nil {
		return err
	}
	res, err := node.SubmitVia(f.ctx, filepath.Join(f.dir, "dc-a"), env)
	if err != nil {
		return err
	}
	if !res.Applied {
		return fmt.Errorf("%s refused: %s", c.Kind, res.Reason)
	}
	return nil
}

// found initialises dc-a as the federation's first node, with alice as its
// first admin, and adds two sites with two synthetic cameras each.
func (f *federation) found() error {
	ap, err := listen()
	if err != nil {
		return err
	}
	// Demo shortcut: the controller's recovery key is made here, in the demo
	// process, where custos recovery keygen would make it on the admin's
	// machine; only its public half goes to dc-a, and the demo never
	// needs the private half, so it is wiped at once.
	recovery, err := keys.NewCustodianKey("recovery")
	if err != nil {
		return err
	}
	recoveryPub := recovery.Custodian().PublicKey()
	recovery.Zero()
	if err := node.Init(node.Config{Dir: filepath.Join(f.dir, "dc-a"), Name: "dc-a", Listen: ap},
		node.InitOptions{Federation: "acme-retail", AdminName: "alice", AdminPublic: f.admin.PublicKey(), AdminFP: f.admin.Fingerprint(), Recovery: recoveryPub}); err != nil {
		return err
	}
	if f.fid, err = node.FederationIDOf(filepath.Join(f.dir, "dc-a")); err != nil {
		return err
	}
	if err := f.start("dc-a", ap); err != nil {
		return err
	}
	f.say("   dc-a founded federation \"acme-retail\"; first admin alice (%s)", f.admin.Fingerprint()[:16])
	for _, s := range []string{"praha-1", "brno-1"} {
		if err := f.submit(&policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: s, Jurisdiction: "EU"}}); err != nil {
			return err
		}
	}
	for _, c := range []*policy.Camera{
		{Site: "praha-1", Name: "entrance", Source: "synthetic:", Purpose: "protection of property and persons", LegalBasis: "GDPR art. 6(1)(f)", Retention: policy.DefaultRetention},
		{Site: "praha-1", Name: "tills", Source: "synthetic:", Purpose: "protection of property and persons", LegalBasis: "GDPR art. 6(1)(f)", Retention: policy.DefaultRetention, Tags: []string{"tills"}},
		{Site: "brno-1", Name: "door", Source: "synthetic:", Purpose: "protection of property and persons", LegalBasis: "GDPR art. 6(1)(f)", Retention: policy.DefaultRetention},
		{Site: "brno-1", Name: "yard", Source: "synthetic:?fps=10", Purpose: "protection of property and persons", LegalBasis: "GDPR art. 6(1)(f)", Retention: 24 * time.Hour},
	} {
		if err := f.submit(&policy.Command{Kind: policy.KindAddCamera, Camera: c}); err != nil {
			return err
		}
	}
	return nil
}

// joinAs has alice invite name and the node join with the token, as
// `custos invite` and `custos join` would, and returns how long it took
// from the invite until the node holds a replica of the policy.
func (f *federation) joinAs(name string, role policy.NodeRole, site string, win policy.Window) (time.Duration, error) {
	t0 := time.Now()
	inv, err := node.MakeInvite(f.ctx, filepath.Join(f.dir, "dc-a"), f.admin, "alice",
		node.InviteSpec{Role: role, Name: name, Site: site, Window: win, Expires: time.Now().Add(time.Hour)}, time.Now())
	if err != nil {
		return 0, fmt.Errorf("invite %s: %w", name, err)
	}
	tok, err := node.DecodeToken(inv.Token, time.Now())
	if err != nil {
		return 0, err
	}
	ap, err := listen()
	if err != nil {
		return 0, err
	}
	res, err := node.PrepareJoin(f.ctx, node.Config{Dir: filepath.Join(f.dir, name), Name: name, Listen: ap}, tok)
	if err != nil {
		return 0, err
	}
	if !res.Applied {
		return 0, fmt.Errorf("join %s refused: %s", name, res.Reason)
	}
	if err := f.start(name, ap); err != nil {
		return 0, err
	}
	if err := nodetest.WaitCond(f.ctx, 30*time.Second, func() bool {
		st := f.nodes[name].Policy()
		return st != nil && st.Nodes[name] != nil
	}); err != nil {
		return 0, fmt.Errorf("%s never received the policy: %w", name, err)
	}
	return time.Since(t0), nil
}

// joinAll brings in the rest of the federation, one invite each: the
// second datacenter, the witness, a store per site and alice's admin node.
func (f *federation) joinAll() error {
	for _, j := range []struct {
		name string
		role policy.NodeRole
		site string
	}{{"dc-b", policy.RoleDatacenter, ""}, {"witness", policy.RoleWitness, ""}, {"store-praha-1", policy.RoleStore, "praha-1"},
		{"store-brno-1", policy.RoleStore, "brno-1"}, {"admin-alice", policy.RoleAdminNode, ""}} {
		d, err := f.joinAs(j.name, j.role, j.site, policy.Window{})
		if err != nil {
			return err
		}
		f.say("   %-14s joined as %-10s (token → replica of the policy in %v)", j.name, j.role, d.Round(time.Millisecond))
	}
	return nil
}

// recordings waits until each store writes segments of both its cameras,
// then shows them and that the files on disk are ciphertext.
func (f *federation) recordings() error {
	f.say("\n== Each store records its site's two synthetic cameras, encrypted per epoch")
	if err := nodetest.WaitCond(f.ctx, 20*time.Second, func() bool {
		for _, name := range []string{"store-praha-1", "store-brno-1"} {
			st, err := f.nodes[name].Status()
			if err != nil || st.Recording == nil || len(st.Recording.Cameras) != 2 {
				return false
			}
			for _, c := range st.Recording.Cameras {
				if c.SegmentsWritten < 1 {
					return false
				}
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("the stores are not recording: %w", err)
	}
	for _, name := range []string{"store-praha-1", "store-brno-1"} {
		demoCameras(f.w, name, f.nodes[name])
	}
	demoEncrypted(f.w, filepath.Join(f.dir, "store-praha-1"))
	return nil
}

// revoke revokes store-brno-1 and times until no other node keeps it as a
// WireGuard peer.
func (f *federation) revoke() error {
	f.say("\n== store-brno-1 is revoked")
	brno := f.nodes["store-brno-1"].Mesh().Addr()
	if err := f.submit(&policy.Command{Kind: policy.KindRevokeNode, Name: "store-brno-1"}); err != nil {
		return err
	}
	t0 := time.Now()
	if err := nodetest.WaitCond(f.ctx, 5*time.Second, func() bool {
		for _, n := range []string{"dc-a", "dc-b", "witness", "admin-alice"} {
			if _, ok := f.nodes[n].Mesh().PeerByAddr(brno); ok {
				return false
			}
		}
		return true
	}); err != nil {
		return fmt.Errorf("revoked store still connected: %w", err)
	}
	f.say("   cut off by every node within %v", time.Since(t0).Round(time.Millisecond))
	var m *node.Membership
	if err := nodetest.WaitCond(f.ctx, 5*time.Second, func() bool {
		st, err := f.nodes["store-brno-1"].Status()
		m = st.Membership
		return err == nil && m != nil && m.State == node.StandingRevoked
	}); err != nil {
		return fmt.Errorf("the revoked store does not know it: %w", err)
	}
	f.say("   store-brno-1 knew within %v (%s): %s", time.Since(t0).Round(time.Millisecond), m.Source, m.Detail)
	return nil
}

// laterRecordings shows the stores again: the revoked one recorded nothing
// more, and keeps what it had.
func (f *federation) laterRecordings() {
	f.say("\n== Recordings a little later (store-brno-1, revoked, stopped its recorders and keeps what it")
	f.say("   had recorded, encrypted to keys whose shares only the datacenters and the recovery key open)")
	for _, name := range []string{"store-praha-1", "store-brno-1"} {
		demoCameras(f.w, name, f.nodes[name])
	}
}

// paths prints how admin-alice reaches each peer: the path its packets
// take (direct, or through a datacenter's relay), as `custos status` shows.
func (f *federation) paths() {
	st, err := f.nodes["admin-alice"].Status()
	if err != nil {
		return
	}
	f.say("\n== admin-alice's peers: every datacenter serves a relay on its WireGuard port (TCP); packets go")
	f.say("   through one until a direct UDP path answers (on this one machine, at once)")
	if u := st.Underlay; u != nil {
		var rs []string
		for _, r := range u.Relays {
			state := "unreachable"
			if r.Connected {
				state = "connected"
			}
			rs = append(rs, r.Name+" "+state)
		}
		f.say("   relays: %s", strings.Join(rs, ", "))
	}
	membership.WritePeerTable(f.w, st.Peers, "   ")
}

// raftStatus prints dc-a's view of the Raft cluster: its role, term,
// commit index, and which members vote.
func (f *federation) raftStatus() {
	st, err := f.nodes["dc-a"].Status()
	if err != nil || st.Consensus == nil {
		return
	}
	c := st.Consensus
	f.say("\n== dc-a: raft %s, term %d, commit %d; members:", c.Role, c.Term, c.CommitIndex)
	pol := f.nodes["dc-a"].Policy()
	for _, m := range c.Members {
		kind := "non-voter"
		if m.Voter {
			kind = "voter"
		}
		f.say("   %-14s %s", pol.NameOfKey(m.ID), kind)
	}
}

// demoCameras prints what a store records.
func demoCameras(w io.Writer, name string, n *node.Node) {
	st, err := n.Status()
	if err != nil || st.Recording == nil {
		return
	}
	if st.Recording.Waiting != "" {
		fmt.Fprintf(w, "   %s: not recording: %s\n", name, st.Recording.Waiting)
	}
	for _, c := range st.Recording.Cameras {
		fmt.Fprintf(w, "   %-14s %-17s %-9s %4.1f fps %6.0f kbit/s  %3d segments %6.2f MB  %d epoch keys  last %s\n",
			name, c.Camera, c.State, c.FPS, c.BitrateBPS/1000, c.Segments, float64(c.Bytes)/1e6, c.Epochs, c.LastSegment.Local().Format(time.TimeOnly))
	}
}

// demoEncrypted shows a few stored segment files: OpenPGP messages, no
// MPEG-TS packet or H.264 start code in sight.
func demoEncrypted(w io.Writer, dir string) {
	var files []string
	filepath.WalkDir(node.MediaDir(dir), func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && strings.HasSuffix(path, ".seg") {
			files = append(files, path)
		}
		return nil
	})
	sort.Strings(files)
	for i, f := range files {
		if i == 2 {
			break
		}
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		rel, _ := filepath.Rel(dir, f)
		fmt.Fprintf(w, "   %s…seg: %d bytes, starts % x (an OpenPGP message); MPEG-TS packets in it: %d\n",
			rel[:min(len(rel), 70)], len(b), b[:min(4, len(b))], nodetest.TSPackets(b))
	}
}
