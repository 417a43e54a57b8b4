package console

import (
	"bytes"
	"context"
	"embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/auditquery"
	"github.com/custos-cctv/custos/policy"
)

//go:embed templates
var templateFiles embed.FS

// pages renders the console's pages; each handler reads what it shows from
// the node at the time of the request.
type pages struct {
	s    *Server
	tmpl map[string]*template.Template
}

// view is what every page template gets.
type view struct {
	Lang, User, CSRF, Flash, Page, KeyFile string
	Back                                   string // where a language switch returns to
	Data                                   any
}

func newPages(s *Server) (*pages, error) {
	funcs := template.FuncMap{
		"t":     tr,
		"tf":    func(lang, key string, a ...any) string { return fmt.Sprintf(tr(lang, key), a...) },
		"stamp": stamp,
		"join":  strings.Join,
		"dataURL": func(mime string, b []byte) template.URL {
			// Only the console's own PNGs (QR codes) come here.
			return template.URL("data:" + mime + ";base64," + base64.StdEncoding.EncodeToString(b))
		},
	}
	p := &pages{s: s, tmpl: map[string]*template.Template{}}
	names, err := templateFiles.ReadDir("templates")
	if err != nil {
		return nil, err
	}
	for _, e := range names {
		name := strings.TrimSuffix(e.Name(), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(templateFiles, "templates/layout.html", "templates/"+e.Name())
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		p.tmpl[name] = t
	}
	return p, nil
}

// render writes page with data; a failure to render is a 500 with no
// half-written page.
func (p *pages) render(w http.ResponseWriter, status int, page string, ss *session, lang string, data any) {
	v := view{Lang: lang, Page: page, Data: data, KeyFile: p.s.cfg.KeyFile, Back: "/"}
	if page != "overview" && page != "error" && page != "login" {
		v.Back = "/" + page
	}
	if ss != nil {
		v.User, v.CSRF, v.Lang = ss.user, ss.csrf, ss.lang
		p.s.mu.Lock()
		v.Flash, ss.flash = ss.flash, ""
		p.s.mu.Unlock()
	}
	var b bytes.Buffer
	if err := p.tmpl[page].ExecuteTemplate(&b, "layout", v); err != nil {
		p.s.cfg.Logf("console: render %s: %v", page, err)
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

// fail shows an error on page's layout with its status.
func (p *pages) fail(w http.ResponseWriter, status int, ss *session, err error) {
	p.render(w, status, "error", ss, "en", err.Error())
}

func (p *pages) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 30*time.Second)
}

// policyOrFail reads the node's current policy, or answers that the node
// cannot give it (503) and returns nil.
func (p *pages) policyOrFail(w http.ResponseWriter, r *http.Request, ss *session) *policy.State {
	pol, err := p.policyOf(r)
	if err != nil {
		p.fail(w, http.StatusServiceUnavailable, ss, err)
		return nil
	}
	return pol
}

// statusAndPolicy reads the node's status and policy, or answers that the
// node cannot give them (503) and reports false.
func (p *pages) statusAndPolicy(w http.ResponseWriter, r *http.Request, ss *session) (node.Status, *policy.State, bool) {
	ctx, cancel := p.ctx(r)
	defer cancel()
	st, err := node.FetchStatus(ctx, p.s.cfg.Dir)
	if err == nil {
		var pol *policy.State
		if pol, err = node.FetchPolicy(ctx, p.s.cfg.Dir); err == nil {
			return st, pol, true
		}
	}
	p.fail(w, http.StatusServiceUnavailable, ss, err)
	return st, nil, false
}

// policyOf reads the node's current policy.
func (p *pages) policyOf(r *http.Request) (*policy.State, error) {
	ctx, cancel := p.ctx(r)
	defer cancel()
	return node.FetchPolicy(ctx, p.s.cfg.Dir)
}

func (p *pages) loginPage(w http.ResponseWriter, r *http.Request) {
	if p.s.sessionOf(r) != nil {
		http.Redirect(w, r, "/", http.StatusSeeOther)
		return
	}
	p.render(w, http.StatusOK, "login", nil, langOf(r), "")
}

// loginPost unlocks the key with the passphrase and names its user by the
// node's policy. A wrong passphrase costs half a second, one at a time.
func (p *pages) loginPost(w http.ResponseWriter, r *http.Request) {
	lang := langOf(r)
	if o := r.Header.Get("Origin"); o != "" && !p.s.hosts[strings.TrimPrefix(o, "http://")] {
		http.Error(w, "refused: the request comes from another site", http.StatusForbidden)
		return
	}
	pass := []byte(r.PostFormValue("passphrase"))
	defer clear(pass)
	p.s.login.Lock()
	k, err := keys.LoadAdminKey(p.s.cfg.KeyFile, pass)
	if err != nil {
		time.Sleep(loginBackoff)
		p.s.login.Unlock()
		msg := tr(lang, "login.failed")
		if !errors.Is(err, keys.ErrBadPassphrase) {
			msg = err.Error()
		}
		p.render(w, http.StatusUnauthorized, "login", nil, lang, msg)
		return
	}
	p.s.login.Unlock()
	st, err := p.policyOf(r)
	if err != nil {
		k.Close()
		p.render(w, http.StatusServiceUnavailable, "login", nil, lang, err.Error())
		return
	}
	user := userOf(st, k)
	if user == "" {
		k.Close()
		p.render(w, http.StatusForbidden, "login", nil, lang, fmt.Sprintf("the key %s is no user's in the policy of federation %q", k.Fingerprint(), st.Federation))
		return
	}
	setSessionCookie(w, p.s.newSession(k, user, lang), 0)
	p.s.cfg.Logf("console: %s logged in", user)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// userOf is the current user the policy knows k as, or "".
func userOf(st *policy.State, k *keys.AdminKey) string {
	fp := k.Fingerprint()
	for _, u := range st.Users {
		if strings.EqualFold(u.Fingerprint, fp) && !u.Revoked {
			return u.Name
		}
	}
	return ""
}

func (p *pages) logout(w http.ResponseWriter, r *http.Request, ss *session) {
	p.s.endSession(r)
	setSessionCookie(w, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

func (p *pages) setLang(w http.ResponseWriter, r *http.Request, ss *session) {
	p.s.mu.Lock()
	if r.PostFormValue("lang") == "cs" {
		ss.lang = "cs"
	} else {
		ss.lang = "en"
	}
	p.s.mu.Unlock()
	back := r.PostFormValue("back")
	if !strings.HasPrefix(back, "/") || strings.HasPrefix(back, "//") {
		back = "/"
	}
	http.Redirect(w, r, back, http.StatusSeeOther)
}

// overviewData is the federation at a glance.
type overviewData struct {
	Status  node.Status
	Policy  *policy.State
	Sites   []siteRow
	Alarms  []string
	Now     time.Time
	Leader  string
	Applied uint64
}

type siteRow struct {
	Name    string
	Nodes   []string
	Cameras int
}

func (p *pages) overview(w http.ResponseWriter, r *http.Request, ss *session) {
	st, pol, ok := p.statusAndPolicy(w, r, ss)
	if !ok {
		return
	}
	d := overviewData{Status: st, Policy: pol, Now: time.Now(), Applied: pol.Applied}
	if c := st.Consensus; c != nil {
		d.Leader = c.LeaderID
		if n := pol.NameOfKey(c.LeaderID); n != "" {
			d.Leader = n
		}
	}
	for _, name := range slices.Sorted(maps.Keys(pol.Sites)) {
		row := siteRow{Name: name}
		for _, nn := range slices.Sorted(maps.Keys(pol.Nodes)) {
			if n := pol.Nodes[nn]; n.Site == name && !n.Revoked {
				row.Nodes = append(row.Nodes, nn)
			}
		}
		for _, c := range pol.Cameras {
			if c.Site == name {
				row.Cameras++
			}
		}
		d.Sites = append(d.Sites, row)
	}
	if st.AuditFailure != "" {
		d.Alarms = append(d.Alarms, "audit journal failing: "+st.AuditFailure)
	}
	if st.CorruptSegments > 0 {
		d.Alarms = append(d.Alarms, fmt.Sprintf("%d corrupt segments", st.CorruptSegments))
	}
	for _, a := range st.Alerts {
		d.Alarms = append(d.Alarms, fmt.Sprintf("ALERT %s %s: %s (%s)", a.Rule, a.Subject, a.Detail, stamp(a.Time)))
	}
	for _, b := range pol.OpenBreaches() {
		if b.Notified.IsZero() {
			d.Alarms = append(d.Alarms, fmt.Sprintf("BREACH %s: notify the supervisory authority by %s: %s", b.ID, stamp(b.Deadline()), policy.FormatLeft(b.Left(d.Now))))
		}
	}
	p.render(w, http.StatusOK, "overview", ss, ss.lang, d)
}

type cameraRow struct {
	Site, Name, Purpose, Retention, Source string
}

func (p *pages) cameras(w http.ResponseWriter, r *http.Request, ss *session) {
	pol := p.policyOrFail(w, r, ss)
	if pol == nil {
		return
	}
	var rows []cameraRow
	for _, id := range slices.Sorted(maps.Keys(pol.Cameras)) {
		c := pol.Cameras[id]
		rows = append(rows, cameraRow{Site: c.Site, Name: c.Name, Purpose: c.Purpose, Retention: c.Retention.String(), Source: sourceScheme(c.Source)})
	}
	p.render(w, http.StatusOK, "cameras", ss, ss.lang, rows)
}

// sourceScheme shows where a camera records from without its address.
func sourceScheme(s string) string {
	scheme, _, _ := strings.Cut(s, ":")
	return scheme
}

type requestRow struct {
	ID, Action, Requester, Cameras, Footage, Purpose, Status, Expires string
	Approvals                                                         string
	Open, Exportable, Exported                                        bool
}

// exportable: the session's own approved view request, for this node,
// not yet exported (its one-time key serves one export).
func exportable(q *policy.Request, status, user, self string, exported map[string]bool) bool {
	return q.Action == policy.ActionView && status == policy.RequestApproved && q.Requester == user && q.Node == self && !exported[q.ID]
}

type proposalRow struct {
	ID, Proposer, Change, Status, Expires, Approvals string
	Open                                             bool
}

func (p *pages) requests(w http.ResponseWriter, r *http.Request, ss *session) {
	pol := p.policyOrFail(w, r, ss)
	if pol == nil {
		return
	}
	now := time.Now()
	var d struct {
		Requests  []requestRow
		Proposals []proposalRow
		Passkey   bool // the session's user approves with a passkey
	}
	d.Passkey = usesPasskey(pol, ss.user)
	ctx, cancel := p.ctx(r)
	defer cancel()
	exported := map[string]bool{}
	es, err := node.FetchExported(ctx, p.s.cfg.Dir)
	if err != nil {
		p.fail(w, http.StatusServiceUnavailable, ss, err)
		return
	}
	for _, e := range es {
		exported[e.Request] = true
	}
	self := p.s.selfName(ctx)
	for _, id := range slices.Sorted(maps.Keys(pol.Requests)) {
		q := pol.Requests[id]
		status := pol.RequestStatus(q, now)
		action := q.Action
		if action == "" {
			action = "view"
		}
		d.Requests = append(d.Requests, requestRow{ID: id, Action: action, Requester: q.Requester, Cameras: strings.Join(q.Cameras, ", "),
			Footage:    fmt.Sprintf("%s – %s", stamp(q.From), stamp(q.To)),
			Purpose:    q.Purpose,
			Status:     status,
			Expires:    stamp(q.Expires),
			Approvals:  fmt.Sprintf("%d / %d", pol.CountApprovals(q.Approvals, now, q.Requester), pol.ApprovalThreshold()),
			Open:       status == policy.RequestPending,
			Exportable: exportable(q, status, ss.user, self, exported),
			Exported:   exported[id] && p.s.exportedHere(id)})
	}
	for _, id := range slices.Sorted(maps.Keys(pol.Proposals)) {
		pr := pol.Proposals[id]
		change := "?"
		if c, err := policy.DecodeCommand(pr.Body); err == nil {
			change = c.Describe() // whose passkey, user or node: what an approver approves
		}
		open := pr.Executed.IsZero() && now.Before(pr.Expires)
		status := "pending"
		switch {
		case !pr.Executed.IsZero():
			status = "executed"
		case !open:
			status = "expired"
		}
		// An executed proposal shows the approvals it was executed with; an
		// open one those that count now.
		approvals := fmt.Sprintf("%d / %d", pol.CountApprovals(pr.Approvals, now, pr.Proposer), pol.ApprovalThreshold())
		if !pr.Executed.IsZero() {
			approvals = strconv.Itoa(len(pr.Approvals))
		}
		d.Proposals = append(d.Proposals, proposalRow{ID: id, Proposer: pr.Proposer, Change: change, Status: status, Expires: stamp(pr.Expires),
			Approvals: approvals, Open: open})
	}
	p.render(w, http.StatusOK, "requests", ss, ss.lang, d)
}

// openRequest files a request for footage in the session's name, for
// this node: its one-time release key is made in the node's memory, and
// only the public half travels in the request.
func (p *pages) openRequest(w http.ResponseWriter, r *http.Request, ss *session) {
	now := time.Now()
	win, err := formWindow(r.PostFormValue("from"), r.PostFormValue("to"), time.Time{})
	if err != nil {
		p.fail(w, http.StatusBadRequest, ss, err)
		return
	}
	if win.From.IsZero() || win.Until.IsZero() {
		p.fail(w, http.StatusBadRequest, ss, errors.New("a request needs the footage's start and end"))
		return
	}
	hours, err := strconv.Atoi(r.PostFormValue("expires"))
	if err != nil || hours < 1 || hours > 24*30 {
		p.fail(w, http.StatusBadRequest, ss, errors.New("the request's expiry: want 1 to 720 hours"))
		return
	}
	q := &policy.Request{ID: "r-" + strings.TrimPrefix(policy.NewCommandID(), "c-"), Selector: strings.TrimSpace(r.PostFormValue("cameras")),
		From: win.From.UTC(), To: win.Until.UTC(), Purpose: strings.TrimSpace(r.PostFormValue("purpose")), Basis: strings.TrimSpace(r.PostFormValue("basis")),
		Expires: now.Add(time.Duration(hours) * time.Hour).UTC()}
	if q.Selector == "" || q.Purpose == "" || q.Basis == "" {
		p.fail(w, http.StatusBadRequest, ss, errors.New("a request needs the cameras, its purpose and its legal basis"))
		return
	}
	st, pol, ok := p.statusAndPolicy(w, r, ss)
	if !ok {
		return
	}
	q.Node = st.Name
	ctx, cancel := p.ctx(r)
	defer cancel()
	if q.Key, err = node.NewReleaseKeyVia(ctx, p.s.cfg.Dir); err != nil {
		p.fail(w, http.StatusServiceUnavailable, ss, err)
		return
	}
	p.submit(w, r, ss, pol, &policy.Command{Kind: policy.KindCreateRequest, Request: q}, "flash.opened", q.ID)
}

// approve signs, with the session's key, an approval of exactly the
// request or proposal the policy holds under the ID, and submits it. A user
// whose role approves with a passkey approves through approveBegin and
// approveFinish instead (the page's script does it).
func (p *pages) approve(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	pol := p.policyOrFail(w, r, ss)
	if pol == nil {
		return
	}
	c, err := pol.ApprovalFor(id)
	if err != nil {
		p.fail(w, http.StatusNotFound, ss, err)
		return
	}
	if pol.ApprovalNeedsPasskey(ss.user) != nil {
		p.fail(w, http.StatusForbidden, ss, fmt.Errorf("role %s approves with a passkey: the Approve button asks for it, and needs the page's script", pol.Users[ss.user].Role))
		return
	}
	p.submit(w, r, ss, pol, c, "flash.approved", id)
}

func (p *pages) deny(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	reason := strings.TrimSpace(r.PostFormValue("reason"))
	if reason == "" {
		p.fail(w, http.StatusBadRequest, ss, errors.New("a denial needs its reason: the requester is told"))
		return
	}
	pol := p.policyOrFail(w, r, ss)
	if pol == nil {
		return
	}
	p.submit(w, r, ss, pol, &policy.Command{Kind: policy.KindDenyRequest, Denial: &policy.Denial{Request: id, Reason: reason}}, "flash.denied", id)
}

// submit signs c as the session's user and submits it; the policy's
// refusal is shown as it is, with 403.
func (p *pages) submit(w http.ResponseWriter, r *http.Request, ss *session, pol *policy.State, c *policy.Command, flash, id string) {
	env, err := node.SignCommand(ss.key, pol.FederationID, ss.user, c)
	if err != nil {
		p.fail(w, http.StatusInternalServerError, ss, err)
		return
	}
	if status, err := p.applied(r, func(ctx context.Context) (node.ApplyResult, error) { return node.SubmitVia(ctx, p.s.cfg.Dir, env) }); err != nil {
		p.fail(w, status, ss, err)
		return
	}
	p.s.mu.Lock()
	ss.flash = fmt.Sprintf(tr(ss.lang, flash), id, ss.user)
	p.s.mu.Unlock()
	http.Redirect(w, r, "/requests", http.StatusSeeOther)
}

// applied runs submit against the node and says how it went: nil when
// the policy applied the command; else the status to answer with (503: the
// node could not be asked; 403: the policy refused, its reason as it is)
// and why.
func (p *pages) applied(r *http.Request, submit func(context.Context) (node.ApplyResult, error)) (int, error) {
	ctx, cancel := p.ctx(r)
	defer cancel()
	res, err := submit(ctx)
	if err != nil {
		return http.StatusServiceUnavailable, err
	}
	if !res.Applied {
		return http.StatusForbidden, fmt.Errorf("refused by the policy: %s", res.Reason)
	}
	return 0, nil
}

type inviteData struct {
	Sites       []string
	Token, Name string
	QR          []byte
	Window      string
	Expires     string
}

func (p *pages) invites(w http.ResponseWriter, r *http.Request, ss *session) {
	pol := p.policyOrFail(w, r, ss)
	if pol == nil {
		return
	}
	p.render(w, http.StatusOK, "invites", ss, ss.lang, inviteData{Sites: slices.Sorted(maps.Keys(pol.Sites))})
}

// invite makes an installer's or a store's invite and shows its token as
// text and as a QR code.
func (p *pages) invite(w http.ResponseWriter, r *http.Request, ss *session) {
	pol := p.policyOrFail(w, r, ss)
	if pol == nil {
		return
	}
	now := time.Now()
	role := policy.NodeRole(r.PostFormValue("role"))
	if role != policy.RoleInstaller && role != policy.RoleStore {
		p.fail(w, http.StatusBadRequest, ss, fmt.Errorf("role %q: the console invites installers and stores (datacenters and witnesses: custos invite)", role))
		return
	}
	win, err := formWindow(r.PostFormValue("from"), r.PostFormValue("until"), now)
	if err != nil {
		p.fail(w, http.StatusBadRequest, ss, err)
		return
	}
	hours, err := strconv.Atoi(r.PostFormValue("expires"))
	if err != nil || hours < 1 || hours > 24*7 {
		p.fail(w, http.StatusBadRequest, ss, errors.New("the token's expiry: want 1 to 168 hours"))
		return
	}
	spec := node.InviteSpec{Role: role, Name: strings.TrimSpace(r.PostFormValue("name")), Site: r.PostFormValue("site"),
		Window: win, Expires: now.Add(time.Duration(hours) * time.Hour)}
	ctx, cancel := p.ctx(r)
	defer cancel()
	inv, err := node.MakeInvite(ctx, p.s.cfg.Dir, ss.key, ss.user, spec, now)
	if err != nil {
		status := http.StatusBadRequest
		var ref *policy.Refused
		if errors.As(err, &ref) {
			status = http.StatusForbidden
		}
		p.fail(w, status, ss, err)
		return
	}
	png, err := qrcode.Encode(inv.Token, qrcode.Medium, 320)
	if err != nil {
		p.fail(w, http.StatusInternalServerError, ss, err)
		return
	}
	d := inviteData{Sites: slices.Sorted(maps.Keys(pol.Sites)), Token: inv.Token, Name: spec.Name, QR: png,
		Window: windowText(win, ss.lang), Expires: stamp(spec.Expires)}
	p.render(w, http.StatusOK, "invites", ss, ss.lang, d)
}

// formWindow reads a membership window from datetime-local fields (the
// browser's local time is the machine's: the console runs on it).
func formWindow(from, until string, now time.Time) (policy.Window, error) {
	var win policy.Window
	for _, f := range []struct {
		name, v string
		to      *time.Time
	}{{"from", from, &win.From}, {"until", until, &win.Until}} {
		if f.v == "" {
			continue
		}
		t, err := time.ParseInLocation("2006-01-02T15:04", f.v, time.Local)
		if err != nil {
			// With step="1" a browser sends seconds too.
			t, err = time.ParseInLocation("2006-01-02T15:04:05", f.v, time.Local)
		}
		if err != nil {
			return win, fmt.Errorf("member %s %q: want a date and time", f.name, f.v)
		}
		*f.to = t
	}
	if !win.Until.IsZero() && !win.Until.After(now) {
		return win, errors.New("the window has ended already")
	}
	if !win.From.IsZero() && !win.Until.IsZero() && !win.Until.After(win.From) {
		return win, errors.New("the window ends before it starts")
	}
	return win, nil
}

func windowText(w policy.Window, lang string) string {
	from, until := stamp(w.From), stamp(w.Until)
	if w.From.IsZero() {
		from = "…"
	}
	if w.Until.IsZero() {
		until = tr(lang, "forever")
	}
	return from + " – " + until
}

type grantRow struct {
	ID, Subject, Actions, Cameras, Purpose, Window string
	Active                                         bool
}

func (p *pages) grants(w http.ResponseWriter, r *http.Request, ss *session) {
	pol := p.policyOrFail(w, r, ss)
	if pol == nil {
		return
	}
	now := time.Now()
	var rows []grantRow
	for _, id := range slices.Sorted(maps.Keys(pol.Grants)) {
		g := pol.Grants[id]
		acts := make([]string, len(g.Actions))
		for i, a := range g.Actions {
			acts[i] = string(a)
		}
		rows = append(rows, grantRow{ID: id, Subject: g.Subject.Kind + ":" + g.Subject.Name, Actions: strings.Join(acts, ", "), Cameras: g.Selector,
			Purpose: g.Purpose, Window: windowText(g.Window, ss.lang), Active: !g.Revoked && g.Window.Contains(now)})
	}
	p.render(w, http.StatusOK, "grants", ss, ss.lang, rows)
}

type auditData struct {
	Since, Actor, Action, Scope string
	Rows                        []auditquery.Row
	Note                        string
}

// audit shows this node's journal, or, signed with the session's key,
// every site's from the datacenters.
func (p *pages) audit(w http.ResponseWriter, r *http.Request, ss *session) {
	q := r.URL.Query()
	d := auditData{Since: q.Get("since"), Actor: q.Get("actor"), Action: q.Get("action"), Scope: q.Get("scope")}
	if d.Since == "" {
		d.Since = "24h"
	}
	back, err := time.ParseDuration(d.Since)
	if err != nil || back <= 0 || back > 400*24*time.Hour {
		p.fail(w, http.StatusBadRequest, ss, fmt.Errorf("since %q: want a duration back from now such as 24h", d.Since))
		return
	}
	query := &auditquery.Query{Actor: d.Actor, Action: d.Action, Since: time.Now().Add(-back), Limit: 500, Nonce: "local"}
	if err := query.Check(); err != nil {
		p.fail(w, http.StatusBadRequest, ss, err)
		return
	}
	ctx, cancel := p.ctx(r)
	defer cancel()
	if d.Scope == "all" {
		pol, err := node.FetchPolicy(ctx, p.s.cfg.Dir)
		if err != nil {
			p.fail(w, http.StatusServiceUnavailable, ss, err)
			return
		}
		query.Federation, query.User = pol.FederationID, ss.user
		body, err := auditquery.Sign(query, ss.key)
		if err != nil {
			p.fail(w, http.StatusBadRequest, ss, err)
			return
		}
		ans, err := node.QueryAuditVia(ctx, p.s.cfg.Dir, body)
		if err != nil {
			p.fail(w, http.StatusForbidden, ss, err)
			return
		}
		d.Rows = ans.Rows
		if ans.More > 0 {
			d.Note = fmt.Sprintf("%d older entries match too", ans.More)
		}
	} else {
		entries, err := node.FetchAudit(ctx, p.s.cfg.Dir, query.Since)
		if err != nil {
			p.fail(w, http.StatusServiceUnavailable, ss, err)
			return
		}
		c := auditquery.NewCollector(auditquery.NewMatcher(nil, query))
		for _, e := range entries {
			c.Add("", e)
		}
		d.Rows = c.Rows()
	}
	slices.Reverse(d.Rows) // newest first
	p.render(w, http.StatusOK, "audit", ss, ss.lang, d)
}

type gdprData struct {
	SARs     []sarRow
	Breaches []breachRow
}

type sarRow struct {
	ID, Received, Deadline string
	DaysLeft               int
	Overdue                bool
}

type breachRow struct {
	ID, What, Detected, Clock string
	Draft, Overdue, Notified  bool
}

func (p *pages) gdpr(w http.ResponseWriter, r *http.Request, ss *session) {
	pol := p.policyOrFail(w, r, ss)
	if pol == nil {
		return
	}
	now := time.Now()
	var d gdprData
	for _, a := range pol.SubjectAccesses() {
		if a.Closure != nil {
			continue
		}
		left := a.DaysLeft(now)
		// The subject's name stays out of the page: the ID is the handle.
		d.SARs = append(d.SARs, sarRow{ID: a.ID, Received: a.Received.Format(time.DateOnly), Deadline: a.Deadline().Format(time.DateOnly), DaysLeft: left, Overdue: left < 0})
	}
	for _, b := range pol.OpenBreaches() {
		d.Breaches = append(d.Breaches, breachRow{ID: b.ID, What: b.What, Detected: stamp(b.Detected), Clock: policy.FormatLeft(b.Left(now)),
			Draft: b.Draft, Overdue: b.Notified.IsZero() && b.Left(now) < 0, Notified: !b.Notified.IsZero()})
	}
	p.render(w, http.StatusOK, "gdpr", ss, ss.lang, d)
}

// stamp is a time in the machine's zone to the second, "" for none.
func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.Local().Format("2006-01-02 15:04:05")
}
