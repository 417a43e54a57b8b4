package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/policy"
)

// errDenied marks a command the policy refused: exit status 4.
type errDenied struct{ reason string }

func (e errDenied) Error() string {
	return "refused by the policy: " + refusalPrefix.ReplaceAllString(e.reason, "")
}

// refusalPrefix is what the layers a refusal passed through put before the
// policy's reason: "consensus: command rejected: policy: command c-… (grant.add) refused: ".
var refusalPrefix = regexp.MustCompile(`^(consensus: command rejected: )?(policy: command \S+ \(\S+\) refused: )?`)

func runInit(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	dir := fs.String("dir", "", "the data directory `DIR` of the first datacenter")
	name := fs.String("name", "", "its node name `N` (e.g. dc-a)")
	listen := fs.String("listen", "", "its public underlay UDP address `HOST:PORT` (a host name is resolved once, now)")
	fed := fs.String("federation", "", "the new federation's name `F` (decides the mesh prefix)")
	adminKey := fs.String("admin-key", "", "the first admin's public key `FILE.pub` (from custos admin keygen)")
	adminName := fs.String("admin-name", "", "the first admin's name `N` (default: the key file's base name)")
	recovery := fs.String("recovery", "", "the public half `RECOVERY.pub` of the controller's recovery key (from custos recovery keygen, run on the admin's machine)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" || *name == "" || *listen == "" || *fed == "" || *adminKey == "" {
		return usageError{errors.New("--dir, --name, --listen, --federation and --admin-key are required")}
	}
	if *recovery == "" {
		return usageError{errors.New("--recovery FILE.pub is required: make the recovery key on the admin's machine with custos recovery keygen --out FILE, keep FILE offline, and give FILE.pub here")}
	}
	ap, err := parseListen(ctx, *listen)
	if err != nil {
		return err
	}
	pub, fp, err := keys.ReadPublicKeyFile(*adminKey)
	if err != nil {
		return err
	}
	rec, err := keys.ReadRecoveryPublicKey(*recovery)
	if err != nil {
		return fmt.Errorf("--recovery: %w", err)
	}
	an := *adminName
	if an == "" {
		an = strings.TrimSuffix(strings.TrimSuffix(filepath.Base(*adminKey), ".pub"), ".key")
	}
	if err := node.Init(node.Config{Dir: *dir, Name: *name, Listen: ap, Federation: *fed},
		node.InitOptions{Federation: *fed, AdminName: an, AdminPublic: pub, AdminFP: fp, Recovery: rec.PublicKey()}); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "federation %q founded in %s: datacenter %s, first admin %s (%s), recovery key %s.\n", *fed, *dir, *name, an, fp, rec.Fingerprint())
	if fid, err := node.FederationIDOf(*dir); err == nil {
		// The recovery key's holder proves a release from signatures
		// anchored here (recover-shares --federation), not from any node.
		fmt.Fprintf(stdout, "Federation ID %s: keep it with the recovery key (custos recover-shares --federation %s).\n", fid, fid)
	}
	fmt.Fprintf(stdout, "Start the datacenter with: custos up --dir %s --listen %s\n", *dir, ap)
	return nil
}

// signAndSubmit signs c with the admin key in keyFile, as the user the
// policy knows that key as, and submits it through the node in dir.
func signAndSubmit(ctx context.Context, dir, keyFile string, c *policy.Command, stdout io.Writer) error {
	k, err := loadKey(keyFile)
	if err != nil {
		return err
	}
	defer k.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := signingPolicy(ctx, dir)
	if err != nil {
		return err
	}
	signer, err := signerName(st, k, keyFile)
	if err != nil {
		return err
	}
	return submitAs(ctx, dir, st, k, signer, c, stdout)
}

// submitAs submits c signed by k as signer and says what became of it: applied,
// or, in a sealed federation, proposed.
func submitAs(ctx context.Context, dir string, st *policy.State, k *keys.AdminKey, signer string, c *policy.Command, stdout io.Writer) error {
	res, proposal, err := node.SubmitGoverned(ctx, dir, st, k, signer, c)
	if err != nil {
		return err
	}
	if !res.Applied {
		return errDenied{res.Reason}
	}
	if proposal != "" {
		fmt.Fprintf(stdout, "proposed %s: the federation is sealed, so this change takes effect once %d approvers other than you approve it\n"+
			"(each runs: custos approve %s --dir DIR --as KEY); custos proposals lists it\n%s\n",
			c.Kind, st.ApprovalThreshold(), proposal, proposal)
		return nil
	}
	fmt.Fprintf(stdout, "applied %s %s\n", res.Kind, res.ID)
	return nil
}

// loadKey loads an admin key, asking for its passphrase.
func loadKey(keyFile string) (*keys.AdminKey, error) {
	pass, err := readPassphrase(false)
	if err != nil {
		return nil, err
	}
	defer clear(pass)
	return keys.LoadAdminKey(keyFile, pass)
}

// signerName is the user the policy knows k as: the signer every command
// and export order names. A key belongs to one user at most, revoked users
// included, so the key decides the name.
func signerName(st *policy.State, k *keys.AdminKey, keyFile string) (string, error) {
	if st.Federation == "" {
		// Not a refusal: the node has no policy to refuse by yet.
		return "", errors.New("this node holds no policy yet: it is still catching up with the federation " +
			"(custos status shows its consensus); try again once it does")
	}
	fp := k.Fingerprint()
	for _, u := range st.Users {
		if strings.EqualFold(u.Fingerprint, fp) {
			return u.Name, nil
		}
	}
	return "", errDenied{fmt.Sprintf("the key in %s (fingerprint %s) is no user's in the policy of federation %q", keyFile, fp, st.Federation)}
}

// signingPolicyWait is how long a command that signs waits for a node
// that has just started, and holds no policy yet, to catch up.
const signingPolicyWait = 15 * time.Second

// signingPolicy fetches the policy a command is signed against from the
// node in dir, waiting (within ctx) up to signingPolicyWait while the
// node's replica is still empty.
func signingPolicy(ctx context.Context, dir string) (*policy.State, error) {
	deadline := time.Now().Add(signingPolicyWait)
	for {
		st, err := node.FetchPolicy(ctx, dir)
		if err != nil || st.Federation != "" || time.Now().After(deadline) {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, nil
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// loadSigner loads the admin key in keyFile and names its user in st.
func loadSigner(st *policy.State, keyFile string) (*keys.AdminKey, string, error) {
	k, err := loadKey(keyFile)
	if err != nil {
		return nil, "", err
	}
	name, err := signerName(st, k, keyFile)
	if err != nil {
		k.Close()
		return nil, "", err
	}
	return k, name, nil
}

// commonFlags are the flags every policy-changing command takes.
func commonFlags(fs *flag.FlagSet) (dir, as *string) {
	dir = fs.String("dir", "", "the data directory `DIR` of the local node the command goes through")
	as = fs.String("as", "", "the signing admin's private key file `KEY` (the policy names its user by the key)")
	return
}

func needCommon(dir, as string) error {
	if dir == "" || as == "" {
		return usageError{errors.New("--dir and --as are required")}
	}
	return nil
}

func runSiteAdd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("site add", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	name := fs.String("name", "", "the site's name `S` (e.g. praha-1)")
	jur := fs.String("jurisdiction", "EU", "the jurisdiction `J` where the site's data may be kept")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	return signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: *name, Jurisdiction: *jur}}, stdout)
}

func runAdminAdd(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("admin add", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	name := fs.String("name", "", "the user's name `N`")
	keyFile := fs.String("key", "", "the user's public key `FILE.pub`")
	role := fs.String("role", "", "the user's `ROLE`: admin, approver, auditor, helpdesk or viewer")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	if *name == "" || *keyFile == "" || *role == "" {
		return usageError{errors.New("--name, --key and --role are required")}
	}
	pub, fp, err := keys.ReadPublicKeyFile(*keyFile)
	if err != nil {
		return err
	}
	u := &policy.User{Name: *name, Role: policy.UserRole(*role), PublicKey: pub, Fingerprint: fp}
	return signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindAddUser, User: u}, stdout)
}

func runGrant(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("grant", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	to := fs.String("to", "", "the `SUBJECT`: user:NAME or node:NAME")
	actions := fs.String("action", "", "`ACTIONS`, comma-separated: live, playback, export")
	sel := fs.String("cameras", "", "the camera selector `SEL`: SITE/CAMERA, SITE/*, tag:NAME or *")
	from := fs.String("from", "", "the grant starts at `T`: an RFC 3339 time, or a duration forward from now (default: now)")
	until := fs.String("until", "", "the grant ends at `T`: an RFC 3339 time, or a duration forward from now such as 8h")
	forever := fs.Bool("forever", false, "the grant has no end (instead of --until)")
	purpose := fs.String("purpose", "", "why, as `TEXT` (shown in audits)")
	id := fs.String("id", "", "the grant's `ID` (default: generated)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	switch {
	case *until == "" && !*forever:
		return usageError{errors.New("a grant needs an end: --until T (such as --until 8h, or an RFC 3339 time), or --forever for a grant without one")}
	case *until != "" && *forever:
		return usageError{errors.New("--until and --forever contradict each other: give one")}
	}
	subj, err := policy.ParseSubject(*to)
	if err != nil {
		return usageError{fmt.Errorf("--to: %w", err)}
	}
	if *actions == "" || *sel == "" {
		return usageError{errors.New("--action and --cameras are required")}
	}
	var acts []policy.Action
	for _, a := range strings.Split(*actions, ",") {
		acts = append(acts, policy.Action(strings.TrimSpace(a)))
	}
	w, err := parseWindow(*from, *until, time.Now())
	if err != nil {
		return err
	}
	gid := *id
	if gid == "" {
		gid = "g-" + strings.TrimPrefix(policy.NewCommandID(), "c-")
	}
	g := &policy.Grant{ID: gid, Subject: subj, Actions: acts, Selector: *sel, Window: w, Purpose: *purpose}
	return signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindAddGrant, Grant: g}, stdout)
}

func runRevoke(ctx context.Context, args []string, stdout io.Writer) error {
	pos, args := positional(args, 2)
	fs := flag.NewFlagSet("revoke", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	kinds := map[string]string{"node": policy.KindRevokeNode, "grant": policy.KindRevokeGrant, "admin": policy.KindRevokeUser, "user": policy.KindRevokeUser}
	kind, ok := kinds[pos[0]]
	switch {
	case pos[0] == "" || pos[1] == "":
		return usageError{errors.New("what to revoke? give node, grant or admin and its NAME before the flags")}
	case !ok:
		return usageError{fmt.Errorf("revoke %q: want node, grant or admin", pos[0])}
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	return signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: kind, Name: pos[1]}, stdout)
}

// dirFlags parses the --dir and --json flags every read-only command takes.
func dirFlags(name string, args []string) (dir string, asJSON bool, err error) {
	l, err := listingFlags(name, "", args)
	return l.dir, l.asJSON, err
}

// listing is what a listing command's flags say: the node's directory,
// JSON or a table, and (for lists that hide finished items) all of them.
type listing struct {
	dir         string
	asJSON, all bool
}

// listingFlags parses a listing command's --dir, --json and, when allHelp
// says what it adds, --all.
func listingFlags(name, allHelp string, args []string) (listing, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	d := fs.String("dir", "", "the data directory `DIR` of the local node")
	j := fs.Bool("json", false, "print JSON")
	var all *bool
	if allHelp != "" {
		all = fs.Bool("all", false, allHelp)
	}
	if err := parseFlags(fs, args); err != nil {
		return listing{}, err
	}
	if *d == "" {
		return listing{}, usageError{errors.New("--dir is required")}
	}
	l := listing{dir: *d, asJSON: *j}
	if all != nil {
		l.all = *all
	}
	return l, nil
}

// listingPolicy is listingFlags and the local replica's policy.
func listingPolicy(ctx context.Context, name, allHelp string, args []string) (*policy.State, listing, error) {
	l, err := listingFlags(name, allHelp, args)
	if err != nil {
		return nil, l, err
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := node.FetchPolicy(ctx, l.dir)
	return st, l, err
}

// localPolicy parses a listing command's --dir and --json and reads the
// local replica's policy.
func localPolicy(ctx context.Context, name string, args []string) (*policy.State, bool, error) {
	st, l, err := listingPolicy(ctx, name, "", args)
	return st, l.asJSON, err
}

// listPolicy prints one of the local replica's maps, sorted by key: as JSON,
// or as a table of header and one row per value.
func listPolicy[V any](ctx context.Context, name string, args []string, stdout io.Writer,
	pick func(*policy.State) map[string]V, header string, row func(*policy.State, V) string) error {
	st, asJSON, err := localPolicy(ctx, name, args)
	if err != nil {
		return err
	}
	values := sortedValues(pick(st))
	if asJSON {
		return json.NewEncoder(stdout).Encode(values)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, v := range values {
		fmt.Fprintln(tw, printable(row(st, v)))
	}
	return tw.Flush()
}

// printable keeps a row of policy text from acting on the terminal: the
// policy refuses control characters in new text, but state written by an
// older build, or by a hostile admin's own build, may hold them. Column
// tabs stay; every other control or format character shows as '?'.
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r != '\t' && (unicode.IsControl(r) || unicode.Is(unicode.Cf, r)) {
			return '?'
		}
		return r
	}, strings.ToValidUTF8(s, "?"))
}

// runMembers lists the policy's nodes with the release each live member
// runs now (asked over the mesh; a member that does not answer shows
// why in JSON and "?" in the table).
func runMembers(ctx context.Context, args []string, stdout io.Writer) error {
	now := time.Now()
	st, l, err := listingPolicy(ctx, "members", "", args)
	if err != nil {
		return err
	}
	vctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	releases := map[string]node.NodeVersion{}
	vs, verr := node.FetchVersions(vctx, l.dir)
	for _, v := range vs {
		releases[v.Node] = v
	}
	type member struct {
		*policy.Node
		Release *node.NodeVersion `json:"release,omitempty"`
	}
	var out []member
	for _, n := range sortedValues(st.Nodes) {
		m := member{Node: n}
		if v, ok := releases[n.Name]; ok {
			m.Release = &v
		}
		out = append(out, m)
	}
	if l.asJSON {
		return json.NewEncoder(stdout).Encode(out)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tROLE\tSITE\tWINDOW\tSTATE\tRELEASE\tKEY")
	for _, m := range out {
		n := m.Node
		state := "member"
		switch {
		case n.Revoked:
			state = "revoked"
		case !policy.Member(st, n.Name, now):
			state = "outside window"
		}
		release := "-"
		if v := m.Release; v != nil && v.Error == "" {
			release = fmt.Sprintf("%s (protocol %d)", v.Version, v.Protocol)
		} else if v != nil {
			release = "? (no answer)"
		}
		fmt.Fprintln(tw, printable(fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", n.Name, n.Role, dash(n.Site), windowText(n.Window), state, release, n.PublicKey)))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if verr != nil {
		fmt.Fprintf(stdout, "(releases unknown: %v)\n", verr)
	}
	return nil
}

func runGrants(ctx context.Context, args []string, stdout io.Writer) error {
	return listPolicy(ctx, "grants", args, stdout, func(st *policy.State) map[string]*policy.Grant { return st.Grants },
		"GRANT\tTO\tACTIONS\tCAMERAS\tWINDOW\tSTATE\tPURPOSE", func(_ *policy.State, g *policy.Grant) string {
			state := "active"
			if g.Revoked {
				state = "revoked"
			}
			acts := make([]string, len(g.Actions))
			for i, a := range g.Actions {
				acts[i] = string(a)
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", g.ID, g.Subject, strings.Join(acts, ","), g.Selector, windowText(g.Window), state, g.Purpose)
		})
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func windowText(w policy.Window) string {
	if w.From.IsZero() && w.Until.IsZero() {
		return "always"
	}
	f, u := "…", "…"
	if !w.From.IsZero() {
		f = stamp(w.From)
	}
	if !w.Until.IsZero() {
		u = stamp(w.Until)
	}
	return f + " → " + u
}

// parseWindow reads a grant's or invite's --from and --until (parseTime,
// a bare duration counting forward); an empty flag leaves that side open.
func parseWindow(from, until string, now time.Time) (policy.Window, error) {
	var w policy.Window
	var err error
	if from != "" {
		if w.From, err = parseTime("from", from, forward, now); err != nil {
			return w, usageError{err}
		}
	}
	if until != "" {
		if w.Until, err = parseTime("until", until, forward, now); err != nil {
			return w, usageError{err}
		}
	}
	if !w.From.IsZero() && !w.Until.IsZero() && !w.From.Before(w.Until) {
		return w, usageError{fmt.Errorf("--from %s is not before --until %s", stamp(w.From), stamp(w.Until))}
	}
	return w, nil
}

// sortedValues returns m's values ordered by key, for stable listings.
func sortedValues[V any](m map[string]V) []V {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	out := make([]V, 0, len(ks))
	for _, k := range ks {
		out = append(out, m[k])
	}
	return out
}
