package console

import (
	"context"
	"encoding/base64"
	"html"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy"
)

const pass = "correct horse battery"

// fed is a running datacenter of federation acme, sealed with approvers
// bob and carol, with viewer vic; bob's and vic's keys are on disk.
type fed struct {
	dir   string
	fid   string
	keyOf map[string]string // user → key file
	admin *keys.AdminKey
	n     *node.Node
}

func startFed(t testing.TB) *fed { return startFedWith(t, false) }

// startFedWith is startFed, with a second datacenter dc-b (joined before
// the seal) when custodians says so: a release needs both.
func startFedWith(t testing.TB, custodians bool) *fed {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	tmp := t.TempDir()
	f := &fed{dir: filepath.Join(tmp, "dc-a"), keyOf: map[string]string{}}
	admin, err := keys.NewAdminKey("alice", time.Now().Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(admin.Close)
	f.admin = admin
	rk, err := keys.NewCustodianKey("recovery")
	if err != nil {
		t.Fatal(err)
	}
	defer rk.Zero()
	port, err := nodetest.FreeUDPPort()
	if err != nil {
		t.Fatal(err)
	}
	cfg := node.Config{Dir: f.dir, Name: "dc-a", Listen: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port), Logf: func(string, ...any) {}}
	f.keyOf["alice"] = filepath.Join(tmp, "alice.key")
	if err := keys.WriteAdminKey(f.keyOf["alice"], admin, []byte(pass)); err != nil {
		t.Fatal(err)
	}
	if err := node.Init(cfg, node.InitOptions{Federation: "acme", AdminName: "alice", AdminPublic: admin.PublicKey(), AdminFP: admin.Fingerprint(),
		Recovery: rk.Custodian().ArmoredPublicKey()}); err != nil {
		t.Fatal(err)
	}
	if f.fid, err = node.FederationIDOf(f.dir); err != nil {
		t.Fatal(err)
	}
	if f.n, err = node.New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.n.Close() })
	f.submit(t, ctx, &policy.Command{Kind: policy.KindAddSite, Site: &policy.Site{Name: "praha-1", Jurisdiction: "EU"}})
	f.submit(t, ctx, &policy.Command{Kind: policy.KindAddCamera, Camera: &policy.Camera{Site: "praha-1", Name: "entrance", Source: "synthetic:",
		Purpose: "theft prevention", LegalBasis: "legitimate interest", Retention: 72 * time.Hour}})
	for name, role := range map[string]policy.UserRole{"bob": policy.UserApprover, "carol": policy.UserApprover, "vic": policy.UserViewer} {
		k, err := keys.NewAdminKey(name, time.Now().Add(-time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		f.keyOf[name] = filepath.Join(tmp, name+".key")
		if err := keys.WriteAdminKey(f.keyOf[name], k, []byte(pass)); err != nil {
			t.Fatal(err)
		}
		f.submit(t, ctx, &policy.Command{Kind: policy.KindAddUser, User: &policy.User{Name: name, Role: role, PublicKey: k.PublicKey(), Fingerprint: k.Fingerprint()}})
		k.Close()
	}
	if custodians {
		f.join(t, ctx, node.InviteSpec{Role: policy.RoleDatacenter, Name: "dc-b"}, nil)
	}
	f.submit(t, ctx, &policy.Command{Kind: policy.KindSeal, Seal: &policy.Seal{Threshold: 2}})
	return f
}

func (f *fed) submit(t testing.TB, ctx context.Context, c *policy.Command) {
	t.Helper()
	env, err := node.SignCommand(f.admin, f.fid, "alice", c)
	if err != nil {
		t.Fatal(err)
	}
	if res, err := node.SubmitVia(ctx, f.dir, env); err != nil || !res.Applied {
		t.Fatalf("%s: %+v %v", c.Kind, res, err)
	}
}

// browser is a client of one console that keeps its own cookie, as a
// browser would (the cookie is Secure: Go's jar would not send it over
// plain HTTP to localhost, browsers do).
type browser struct {
	t      testing.TB
	base   string
	host   string
	cookie string
	hc     *http.Client
}

func newBrowser(t testing.TB, s *Server) *browser {
	u, _ := url.Parse(s.URL())
	return &browser{t: t, base: "http://" + s.ln.Addr().String(), host: u.Host,
		hc: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

// do sends a request; form (if not nil) is posted.
func (b *browser) do(method, path string, form url.Values, hdr map[string]string) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, b.base+path, body)
	req.Host = b.host
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if b.cookie != "" {
		req.Header.Set("Cookie", cookieName+"="+b.cookie)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := b.hc.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	for _, c := range resp.Cookies() {
		if c.Name == cookieName {
			b.cookie = c.Value
		}
	}
	return resp, string(out)
}

var csrfRE = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf is the token the page at path carries.
func (b *browser) csrf(path string) string {
	b.t.Helper()
	_, page := b.do("GET", path, nil, nil)
	m := csrfRE.FindStringSubmatch(page)
	if m == nil {
		b.t.Fatalf("no CSRF token on %s:\n%s", path, page)
	}
	return m[1]
}

func (b *browser) login(t testing.TB) {
	t.Helper()
	resp, page := b.do("POST", "/login", url.Values{"passphrase": {pass}}, nil)
	if resp.StatusCode != http.StatusSeeOther || b.cookie == "" {
		t.Fatalf("login: %s\n%s", resp.Status, page)
	}
}

func startConsole(t testing.TB, f *fed, user string, idle time.Duration) *Server {
	t.Helper()
	return startConsoleWith(t, f, user, Config{Idle: idle})
}

// startConsoleWith starts a console as user on f's node with cfg's other
// settings.
func startConsoleWith(t testing.TB, f *fed, user string, cfg Config) *Server {
	t.Helper()
	cfg.Dir, cfg.KeyFile, cfg.Listen, cfg.Logf = f.dir, f.keyOf[user], netip.MustParseAddrPort("127.0.0.1:0"), t.Logf
	s, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestConsole walks the console as an approver does and attacks it as a
// page on another site, another console's cookie and a viewer would.
func TestConsole(t *testing.T) {
	f := startFed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const evil = `<script>alert("x")</script> „uvozovky“ & <b>`
	f.submit(t, ctx, &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{ID: "e1", Action: policy.ActionErase,
		Selector: "praha-1/entrance", From: time.Now().Add(-2 * time.Hour), To: time.Now().Add(-time.Hour), Purpose: evil,
		Expires: time.Now().Add(time.Hour)}})

	if _, err := Start(Config{Dir: f.dir, KeyFile: f.keyOf["bob"], Listen: netip.MustParseAddrPort("0.0.0.0:0")}); err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("a console on 0.0.0.0: %v", err)
	}
	s := startConsole(t, f, "bob", 0)
	b := newBrowser(t, s)

	// Another site's name for this address (DNS rebinding) is refused.
	if resp, _ := b.do("GET", "/login", nil, map[string]string{"Host": "evil.example:" + strings.Split(b.host, ":")[1]}); resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("a foreign Host: %s, want 421", resp.Status)
	}
	// Without a session: the login page only.
	for _, p := range []string{"/", "/requests", "/audit", "/invites", "/gdpr"} {
		if resp, _ := b.do("GET", p, nil, nil); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/login" {
			t.Errorf("GET %s without a session: %s → %s", p, resp.Status, resp.Header.Get("Location"))
		}
	}
	if resp, _ := b.do("POST", "/requests/e1/approve", url.Values{"csrf": {"x"}}, nil); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("approve without a session: %s", resp.Status)
	}
	resp, page := b.do("GET", "/login", nil, nil)
	csp := resp.Header.Get("Content-Security-Policy")
	if resp.StatusCode != 200 || !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe") || !strings.Contains(page, f.keyOf["bob"]) {
		t.Fatalf("login page: %s CSP %q\n%s", resp.Status, csp, page)
	}
	if resp, _ := b.do("GET", "/static/console.css", nil, nil); resp.StatusCode != 200 {
		t.Errorf("static asset: %s", resp.Status)
	}

	// A wrong passphrase: no session.
	resp, page = b.do("POST", "/login", url.Values{"passphrase": {"wrong passphrase"}}, nil)
	if resp.StatusCode != http.StatusUnauthorized || b.cookie != "" || !strings.Contains(page, "does not open") {
		t.Fatalf("wrong passphrase: %s cookie %q\n%s", resp.Status, b.cookie, page)
	}
	resp, _ = b.do("POST", "/login", url.Values{"passphrase": {pass}}, nil)
	var sc *http.Cookie
	for _, c := range resp.Cookies() {
		sc = c
	}
	if resp.StatusCode != http.StatusSeeOther || sc == nil || !sc.HttpOnly || !sc.Secure || sc.SameSite != http.SameSiteStrictMode {
		t.Fatalf("login: %s cookie %+v", resp.Status, sc)
	}

	_, page = b.do("GET", "/", nil, nil)
	for _, want := range []string{`id="federation">acme<`, "dc-a", "praha-1", `id="user">bob<`} {
		if !strings.Contains(page, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	// Text from the policy is escaped, never markup.
	_, page = b.do("GET", "/requests", nil, nil)
	if strings.Contains(page, "<script>alert") || !strings.Contains(page, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; „uvozovky“ &amp; &lt;b&gt;") {
		t.Fatalf("requests page does not escape the purpose:\n%s", page)
	}

	token := b.csrf("/requests")
	// No token, a wrong one, another site's page: refused, nothing signed.
	for name, c := range map[string]struct {
		form url.Values
		hdr  map[string]string
	}{
		"no token":      {url.Values{}, nil},
		"wrong token":   {url.Values{"csrf": {token + "x"}}, nil},
		"another site":  {url.Values{"csrf": {token}}, map[string]string{"Origin": "http://evil.example"}},
		"cross-site fx": {url.Values{"csrf": {token}}, map[string]string{"Sec-Fetch-Site": "cross-site"}},
	} {
		if resp, _ := b.do("POST", "/requests/e1/approve", c.form, c.hdr); resp.StatusCode != http.StatusForbidden {
			t.Errorf("approve, %s: %s, want 403", name, resp.Status)
		}
	}
	if n := len(f.n.Policy().Requests["e1"].Approvals); n != 0 {
		t.Fatalf("%d approvals after refused posts", n)
	}
	resp, page = b.do("POST", "/requests/e1/approve", url.Values{"csrf": {token}}, map[string]string{"Origin": s.URL()})
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve: %s\n%s", resp.Status, page)
	}
	nodetest.WaitTrue(t, 5*time.Second, "bob's approval in the policy", func() bool {
		as := f.n.Policy().Requests["e1"].Approvals
		return len(as) == 1 && as[0].User == "bob"
	})
	if _, page = b.do("GET", "/requests", nil, nil); !strings.Contains(page, "Approved e1 as bob") || !strings.Contains(page, "1 / 2") {
		t.Errorf("requests after approving lacks the flash or the tally:\n%s", page)
	}

	// A viewer's console: logged in, but the policy refuses the approval.
	sv := startConsole(t, f, "vic", 0)
	v := newBrowser(t, sv)
	v.login(t)
	resp, page = v.do("POST", "/requests/e1/approve", url.Values{"csrf": {v.csrf("/requests")}}, nil)
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "refused by the policy") || !strings.Contains(page, "viewer") {
		t.Errorf("a viewer approving: %s\n%s", resp.Status, page)
	}
	// vic's session cookie means nothing to bob's console.
	stolen := &browser{t: t, base: b.base, host: b.host, cookie: v.cookie, hc: b.hc}
	if resp, _ := stolen.do("GET", "/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("another console's cookie: %s, want a redirect to the login", resp.Status)
	}

	// An approver cannot invite (the policy says who may); an admin's
	// console makes an installer's invite: its token and QR code.
	until := time.Now().Add(3 * time.Hour).Format("2006-01-02T15:04")
	invite := url.Values{"role": {"installer"}, "name": {"inst-1"}, "site": {"praha-1"}, "until": {until}, "expires": {"24"}}
	invite.Set("csrf", b.csrf("/invites"))
	if resp, page := b.do("POST", "/invites", invite, nil); resp.StatusCode != http.StatusForbidden || !strings.Contains(page, "needs role admin") {
		t.Errorf("an approver inviting: %s\n%s", resp.Status, page)
	}
	a := newBrowser(t, startConsole(t, f, "alice", 0))
	a.login(t)
	invite.Set("csrf", a.csrf("/invites"))
	resp, page = a.do("POST", "/invites", invite, nil)
	m := regexp.MustCompile(`readonly rows="4" cols="80">(custos1\.[^<]+)<`).FindStringSubmatch(page)
	if resp.StatusCode != 200 || m == nil || !strings.Contains(page, `src="data:image/png;base64,`) {
		t.Fatalf("invite: %s\n%s", resp.Status, page)
	}
	checkQR(t, page, m[1])
	// alice files a request for footage through her console: for this
	// node, with a one-time key the node made.
	before := len(f.n.Policy().Requests)
	form := url.Values{"csrf": {a.csrf("/requests")}, "cameras": {"praha-1/entrance"}, "from": {time.Now().Add(-3 * time.Hour).Format("2006-01-02T15:04")},
		"to": {time.Now().Add(-2 * time.Hour).Format("2006-01-02T15:04")}, "purpose": {"a till was robbed"}, "basis": {"art. 6(1)(f)"}, "expires": {"24"}}
	if resp, page := a.do("POST", "/requests", form, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("filing a request: %s\n%s", resp.Status, page)
	}
	var filed *policy.Request
	for _, q := range f.n.Policy().Requests {
		if q.Purpose == "a till was robbed" {
			filed = q
		}
	}
	if len(f.n.Policy().Requests) != before+1 || filed == nil || filed.Requester != "alice" || filed.Node != "dc-a" || len(filed.Key) != 64 || filed.Cameras[0] != "praha-1/entrance" {
		t.Fatalf("the filed request: %+v", filed)
	}
	form.Set("basis", "")
	if resp, page := a.do("POST", "/requests", form, nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "legal basis") {
		t.Errorf("a request without its basis: %s\n%s", resp.Status, page)
	}
	if resp, page := a.do("POST", "/invites", url.Values{"csrf": {a.csrf("/invites")}, "role": {"datacenter"}, "name": {"dc-x"}, "expires": {"24"}}, nil); resp.StatusCode != http.StatusBadRequest || !strings.Contains(page, "installers and stores") {
		t.Errorf("a datacenter invite from the console: %s\n%s", resp.Status, page)
	}

	for path, want := range map[string]string{"/audit": "policy-change", "/gdpr": `id="breaches"`, "/grants": `id="grants"`, "/cameras": "theft prevention",
		"/audit?scope=all": "admin node", "/audit?since=forever": "want a duration"} {
		if _, page := b.do("GET", path, nil, nil); !strings.Contains(page, want) {
			t.Errorf("%s lacks %q:\n%s", path, want, page)
		}
	}
	b.do("POST", "/lang", url.Values{"csrf": {b.csrf("/")}, "lang": {"cs"}}, nil)
	if _, page := b.do("GET", "/", nil, nil); !strings.Contains(page, "Přehled") || !strings.Contains(page, `lang="cs"`) {
		t.Errorf("Czech overview:\n%s", page)
	}

	// Logging out ends the session: the cookie opens nothing.
	old := b.cookie
	b.do("POST", "/logout", url.Values{"csrf": {b.csrf("/")}}, nil)
	b.cookie = old
	if resp, _ := b.do("GET", "/", nil, nil); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("after logout: %s", resp.Status)
	}
	s.mu.Lock()
	left := len(s.sessions)
	s.mu.Unlock()
	if left != 0 {
		t.Errorf("%d sessions after logout", left)
	}
}

// checkQR decodes the invite page's QR code with zbarimg, when the
// machine has it (CI installs it), and compares it with the token.
func checkQR(t *testing.T, page, token string) {
	t.Helper()
	zbar, err := exec.LookPath("zbarimg")
	if err != nil {
		t.Log("zbarimg not installed: the QR code is not decoded")
		return
	}
	m := regexp.MustCompile(`src="data:image/png;base64,([^"]+)"`).FindStringSubmatch(page)
	png, err := base64.StdEncoding.DecodeString(html.UnescapeString(m[1]))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "qr.png")
	os.WriteFile(path, png, 0o600)
	out, err := exec.Command(zbar, "--quiet", "--raw", path).Output()
	if err != nil {
		t.Fatalf("zbarimg: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != token {
		t.Fatalf("the QR code says %q, want the token %q", got, token)
	}
}

// An idle session ends, on its next request or by the sweep, and its key
// goes with it. (The clock is moved, not waited for: a loaded machine
// must not end a session the test still needs.)
func TestConsoleIdleTimeout(t *testing.T) {
	f := startFed(t)
	s := startConsole(t, f, "bob", time.Minute)
	idle := func() {
		s.mu.Lock()
		for _, ss := range s.sessions {
			ss.last = time.Now().Add(-2 * time.Minute)
		}
		s.mu.Unlock()
	}
	count := func() int {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.sessions)
	}
	b := newBrowser(t, s)
	b.login(t)
	if resp, _ := b.do("GET", "/", nil, nil); resp.StatusCode != 200 {
		t.Fatalf("overview: %s", resp.Status)
	}
	idle()
	if resp, _ := b.do("GET", "/", nil, nil); resp.StatusCode != http.StatusSeeOther || count() != 0 {
		t.Fatalf("after the idle timeout: %s, %d sessions", resp.Status, count())
	}
	b.login(t)
	idle()
	s.sweep(time.Now())
	if n := count(); n != 0 {
		t.Fatalf("the sweep left %d idle sessions", n)
	}
}

// Every phrase exists in both languages.
func TestMessagesComplete(t *testing.T) {
	for key := range messages["en"] {
		if messages["cs"][key] == "" {
			t.Errorf("%q has no Czech", key)
		}
	}
	for key := range messages["cs"] {
		if messages["en"][key] == "" {
			t.Errorf("%q has no English", key)
		}
	}
}

// The passkey endpoints refuse what is out of turn or malformed, each with
// a message that says what was wrong, and sign nothing.
func TestConsolePasskeyRefusals(t *testing.T) {
	f := startFed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f.submit(t, ctx, &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{ID: "e1", Action: policy.ActionErase,
		Selector: "praha-1/entrance", From: time.Now().Add(-2 * time.Hour), To: time.Now().Add(-time.Hour), Purpose: "erasure",
		Expires: time.Now().Add(time.Hour)}})
	s := startConsole(t, f, "bob", 0)
	b := newBrowser(t, s)
	b.login(t)
	tok := b.csrf("/passkeys")
	post := func(path, body string, hdr map[string]string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", b.base+path, strings.NewReader(body))
		req.Host = b.host
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Cookie", cookieName+"="+b.cookie)
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := b.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	csrf := map[string]string{"X-CSRF-Token": tok}
	for _, c := range []struct {
		path, body string
		hdr        map[string]string
		status     int
		want       string
	}{
		{"/passkeys/begin", "{}", nil, http.StatusForbidden, "CSRF"},
		{"/requests/e1/passkey/begin", "{}", nil, http.StatusForbidden, "CSRF"},
		{"/passkeys/finish?name=key", "{}", csrf, http.StatusConflict, "no passkey enrolment is under way"},
		{"/requests/e1/passkey/finish", "{}", csrf, http.StatusConflict, "no approval of"},
		{"/requests/e1/passkey/begin", "{}", csrf, http.StatusConflict, "has no passkey: enrol one"},
		{"/requests/nope/passkey/begin", "{}", csrf, http.StatusNotFound, `no request or proposal \"nope\"`},
	} {
		if status, body := post(c.path, c.body, c.hdr); status != c.status || !strings.Contains(body, c.want) {
			t.Errorf("POST %s: %d %s, want %d %q", c.path, status, body, c.status, c.want)
		}
	}
	// An enrolment started, then answered with a bad name or garbage:
	// refused, and the ceremony is spent either way.
	if status, body := post("/passkeys/begin", "{}", csrf); status != 200 || !strings.Contains(body, `"challenge"`) || !strings.Contains(body, `"userVerification":"required"`) {
		t.Fatalf("begin: %d %s", status, body)
	}
	if status, body := post("/passkeys/finish?name=", "{}", csrf); status != http.StatusBadRequest || !strings.Contains(body, "needs a name") {
		t.Errorf("finish without a name: %d %s", status, body)
	}
	post("/passkeys/begin", "{}", csrf)
	if status, body := post("/passkeys/finish?name=key", `{"id":"AAAA","rawId":"AAAA","type":"public-key","response":{"clientDataJSON":"e30","attestationObject":"oA"}}`, csrf); status != http.StatusBadRequest || !strings.Contains(body, "does not verify") {
		t.Errorf("finish with garbage: %d %s", status, body)
	}
	if status, _ := post("/passkeys/finish?name=key", "{}", csrf); status != http.StatusConflict {
		t.Errorf("a second answer to one ceremony: %d", status)
	}
	if ps := f.n.Policy().Users["bob"].Passkeys; len(ps) != 0 || len(f.n.Policy().Proposals) != 0 {
		t.Errorf("refused enrolments left passkeys %v or proposals %v", ps, f.n.Policy().Proposals)
	}
}

// Markup in anything the policy holds comes out as text on every page: a
// camera's purpose, a grant's purpose, a breach's description, a denial's
// reason (in the audit journal) and a request's purpose. Names cannot
// carry it at all: the policy refuses a site or camera named with markup.
func TestConsoleEscapesEverywhere(t *testing.T) {
	f := startFed(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const evil = `<script>alert(1)</script>`
	const escaped = `&lt;script&gt;alert(1)&lt;/script&gt;`
	for _, c := range []*policy.Command{
		{Kind: policy.KindAddSite, Site: &policy.Site{Name: evil, Jurisdiction: "EU"}},
		{Kind: policy.KindAddCamera, Camera: &policy.Camera{Site: "praha-1", Name: evil, Source: "synthetic:", Purpose: "p", LegalBasis: "b", Retention: time.Hour}},
	} {
		if res := f.submitAs(t, ctx, "alice", c); res.Applied {
			t.Errorf("%s named with markup was applied", c.Kind)
		}
	}
	f.submit(t, ctx, &policy.Command{Kind: policy.KindAddCamera, Camera: &policy.Camera{Site: "praha-1", Name: "till", Source: "synthetic:",
		Purpose: evil, LegalBasis: "b", Retention: time.Hour}})
	f.submit(t, ctx, &policy.Command{Kind: policy.KindAddGrant, Grant: &policy.Grant{ID: "g-1", Subject: policy.Subject{Kind: "user", Name: "vic"},
		Actions: []policy.Action{policy.ActLive}, Selector: "praha-1/*", Purpose: evil, Window: policy.Window{Until: time.Now().Add(time.Hour)}}})
	f.submit(t, ctx, &policy.Command{Kind: policy.KindOpenBreach, Breach: &policy.Breach{ID: "b-1", What: evil, Detected: time.Now().Add(-time.Hour)}})
	f.submit(t, ctx, &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{ID: "e1", Action: policy.ActionErase,
		Selector: "praha-1/entrance", From: time.Now().Add(-2 * time.Hour), To: time.Now().Add(-time.Hour), Purpose: evil, Expires: time.Now().Add(time.Hour)}})
	b := newBrowser(t, startConsole(t, f, "bob", 0))
	b.login(t)
	if resp, page := b.do("POST", "/requests/e1/deny", url.Values{"csrf": {b.csrf("/requests")}, "reason": {evil}}, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("deny: %s\n%s", resp.Status, page)
	}
	for _, path := range []string{"/cameras", "/grants", "/gdpr", "/requests", "/", "/audit?since=1h"} {
		_, page := b.do("GET", path, nil, nil)
		if strings.Contains(page, evil) {
			t.Errorf("%s carries the markup unescaped", path)
		}
		if path != "/" && !strings.Contains(page, escaped) {
			t.Errorf("%s does not show the text escaped:\n%s", path, page)
		}
	}
}
