package console

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/webauthn"
	"github.com/chromedp/chromedp"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/node/internal/nodetest"
	"github.com/custos-cctv/custos/policy"
)

// key unlocks user's key file.
func (f *fed) key(t testing.TB, user string) *keys.AdminKey {
	t.Helper()
	k, err := keys.LoadAdminKey(f.keyOf[user], []byte(pass))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	return k
}

// submitAs signs c as user, with user's key file, and submits it: what
// the CLI does, and what a thief with the key file and passphrase can do.
func (f *fed) submitAs(t testing.TB, ctx context.Context, user string, c *policy.Command) node.ApplyResult {
	t.Helper()
	env, err := node.SignCommand(f.key(t, user), f.fid, user, c)
	if err != nil {
		t.Fatal(err)
	}
	res, err := node.SubmitVia(ctx, f.dir, env)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

// approveAs approves request or proposal id as user, without a passkey.
func (f *fed) approveAs(t testing.TB, ctx context.Context, user, id string) node.ApplyResult {
	t.Helper()
	c, err := f.n.Policy().ApprovalFor(id)
	if err != nil {
		t.Fatal(err)
	}
	return f.submitAs(t, ctx, user, c)
}

// proposalOf is the open proposal proposer made whose change is kind.
func (f *fed) proposalOf(t testing.TB, proposer, kind string) string {
	t.Helper()
	for id, p := range f.n.Policy().Proposals {
		if c, err := policy.DecodeCommand(p.Body); err == nil && p.Proposer == proposer && c.Kind == kind && p.Executed.IsZero() {
			return id
		}
	}
	t.Fatalf("no open %s proposal by %s", kind, proposer)
	return ""
}

// TestConsolePasskeyInChromium: two approvers enrol passkeys in Chromium
// with a CDP virtual authenticator (user-verifying, as a platform
// authenticator with a PIN is), the quorum enrols them and then requires
// passkeys of approvers; an approver approves a release with the passkey
// in the console and the approval records it. Attacks: an approver's key
// file and passphrase alone, a form post without the passkey, and an
// assertion made for one approval put into another, each signed with the
// approver's own key, are refused by the policy.
func TestConsolePasskeyInChromium(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	br := startChromium(t, ctx)
	f := startFed(t)
	for _, id := range []string{"e1", "e2"} {
		f.submit(t, ctx, &policy.Command{Kind: policy.KindCreateRequest, Request: &policy.Request{ID: id, Action: policy.ActionErase,
			Selector: "praha-1/entrance", From: time.Now().Add(-2 * time.Hour), To: time.Now().Add(-time.Hour), Purpose: "a subject asked for erasure",
			Expires: time.Now().Add(time.Hour)}})
	}
	sb, sc := startConsole(t, f, "bob", 0), startConsole(t, f, "carol", 0)

	if _, err := chromedp.Call(br.ctx, webauthn.Enable, webauthn.EnableParams{}); err != nil {
		t.Fatalf("WebAuthn.enable: %v", err)
	}
	auth, err := chromedp.Call(br.ctx, webauthn.AddVirtualAuthenticator, webauthn.AddVirtualAuthenticatorParams{Options: &webauthn.VirtualAuthenticatorOptions{
		Protocol: webauthn.AuthenticatorProtocolCtap2, Transport: webauthn.AuthenticatorTransportInternal,
		HasResidentKey: true, HasUserVerification: true, IsUserVerified: true,
		// Without it set explicitly the ceremony waits for a touch forever.
		AutomaticPresenceSimulation: true,
	}})
	if err != nil {
		t.Fatalf("WebAuthn.addVirtualAuthenticator: %v", err)
	}

	// bob and carol each enrol a passkey: a proposal each, since an
	// approver's passkey decides approvals.
	enrol := func(s *Server, user, name string) string {
		t.Helper()
		br.login(s.URL())
		br.do("enrol "+name, chromedp.Navigate(s.URL()+"/passkeys"), chromedp.SendKeys(chromedp.ID("passkey-name"), name), chromedp.Click(chromedp.ID("enrol")))
		var said string
		nodetest.WaitTrue(t, 20*time.Second, user+"'s enrolment answered", func() bool {
			said = br.poll(`(document.querySelector(".flash") || {}).textContent || (document.getElementById("passkey-status") || {}).textContent || ""`)
			return said != ""
		})
		if !strings.Contains(said, "proposed as p-") {
			t.Fatalf("%s enrolling: %q", user, said)
		}
		return f.proposalOf(t, user, policy.KindAddPasskey)
	}
	pb := enrol(sb, "bob", "bob's laptop")
	br.shot("passkeys")
	pc := enrol(sc, "carol", "carol's phone")
	// An approver sees whose passkey a proposal enrols, and which.
	br.do("the proposals", chromedp.Navigate(sc.URL()+"/requests"))
	if got := br.text(`document.getElementById("proposals").innerText`); !strings.Contains(got, `user.passkey.add for carol: "carol's phone" (RP ID localhost, id `) {
		t.Errorf("the proposals table does not say what is enrolled:\n%s", got)
	}
	for _, a := range []struct{ user, id string }{{"alice", pb}, {"carol", pb}, {"alice", pc}, {"bob", pc}} {
		if res := f.approveAs(t, ctx, a.user, a.id); !res.Applied {
			t.Fatalf("%s approving %s: %s", a.user, a.id, res.Reason)
		}
	}
	creds, err := chromedp.Call(br.ctx, webauthn.GetCredentials, webauthn.GetCredentialsParams(auth))
	if err != nil || len(creds.Credentials) != 2 {
		t.Fatalf("the authenticator holds %d credentials (%v), want bob's and carol's", len(creds.Credentials), err)
	}
	pol := f.n.Policy()
	for _, user := range []string{"bob", "carol"} {
		if ps := pol.Users[user].Passkeys; len(ps) != 1 || ps[0].RPID != "localhost" || ps[0].Alg != policy.AlgES256 {
			t.Fatalf("%s's passkeys: %+v", user, ps)
		}
	}

	// The quorum requires passkeys of approvers.
	res, preq, err := node.SubmitGoverned(ctx, f.dir, pol, f.admin, "alice", &policy.Command{Kind: policy.KindRequirePasskeys,
		PasskeyRequirement: &policy.PasskeyRequirement{Roles: []policy.UserRole{policy.UserApprover}}})
	if err != nil || !res.Applied || preq == "" {
		t.Fatalf("proposing the requirement: %+v %q %v", res, preq, err)
	}
	for _, user := range []string{"bob", "carol"} {
		if res := f.approveAs(t, ctx, user, preq); !res.Applied {
			t.Fatalf("%s approving the requirement: %s", user, res.Reason)
		}
	}
	if !f.n.Policy().PasskeyRequired(policy.UserApprover) {
		t.Fatal("the requirement was not applied")
	}

	// A stolen key file and passphrase alone no longer approve.
	if res := f.approveAs(t, ctx, "carol", "e1"); res.Applied || !strings.Contains(res.Reason, "passkey") {
		t.Fatalf("carol's key alone approving: %+v", res)
	}

	// bob approves e1 in the console with his passkey.
	br.login(sb.URL())
	br.do("approve e1", chromedp.Navigate(sb.URL()+"/requests"), chromedp.Click(chromedp.CSS(`#req-e1 button.approve`)))
	var said string
	nodetest.WaitTrue(t, 20*time.Second, "the approval answered", func() bool {
		said = br.poll(`(document.querySelector(".flash") || {}).textContent || (document.getElementById("passkey-status") || {}).textContent || ""`)
		return said != ""
	})
	if !strings.Contains(said, "with a passkey") {
		t.Fatalf("approving e1: %q", said)
	}
	as := f.n.Policy().Requests["e1"].Approvals
	bobKey := policy.PasskeyIDText(f.n.Policy().Users["bob"].Passkeys[0].ID)
	if len(as) != 1 || as[0].User != "bob" || as[0].Passkey != bobKey {
		t.Fatalf("e1's approvals: %+v, want bob's with passkey %s", as, bobKey)
	}
	br.shot("approved")

	// Without the script's ceremony, the form alone is refused.
	status, err := chromedp.Run(br.ctx, chromedp.Evaluate[string](`fetch("/requests/e2/approve", {method: "POST", body: new URLSearchParams({csrf: document.querySelector('meta[name="csrf"]').content})}).then(async r => r.status + " " + await r.text())`, chromedp.EvalAwaitPromise))
	if err != nil || !strings.HasPrefix(status, "403") || !strings.Contains(status, "approves with a passkey") {
		t.Errorf("a form approval without the passkey: %q %v", status, err)
	}

	// Two ceremonies for e2 (a second tab): the first one's answer is
	// refused by the console before it signs anything.
	twice, err := chromedp.Run(br.ctx, chromedp.Evaluate[string](`(async () => {
		const csrf = document.querySelector('meta[name="csrf"]').content;
		const begin = () => fetch("/requests/e2/passkey/begin", {method: "POST", headers: {"X-CSRF-Token": csrf}}).then(r => r.json());
		const first = await begin();
		await begin();
		const cred = await navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(first.publicKey)});
		const r = await fetch("/requests/e2/passkey/finish", {method: "POST", headers: {"X-CSRF-Token": csrf, "Content-Type": "application/json"}, body: JSON.stringify(cred.toJSON())});
		return r.status + " " + await r.text();
	})()`, chromedp.EvalAwaitPromise))
	if err != nil || !strings.HasPrefix(twice, "409") || !strings.Contains(twice, "another approval") {
		t.Errorf("the first of two ceremonies answered: %q %v", twice, err)
	}

	// An assertion made for the console's approval of e2, taken out of the
	// browser, put into another approval of e2 signed with bob's own key:
	// the replicas refuse it.
	raw, err := chromedp.Run(br.ctx, chromedp.Evaluate[string](`(async () => {
		const csrf = document.querySelector('meta[name="csrf"]').content;
		const r = await fetch("/requests/e2/passkey/begin", {method: "POST", headers: {"X-CSRF-Token": csrf}});
		const opts = await r.json();
		const cred = await navigator.credentials.get({publicKey: PublicKeyCredential.parseRequestOptionsFromJSON(opts.publicKey)});
		return JSON.stringify(cred.toJSON());
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("an assertion for e2: %v", err)
	}
	var got struct {
		RawID    string `json:"rawId"`
		Response struct {
			AuthenticatorData, ClientDataJSON, Signature string
		} `json:"response"`
	}
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatal(err)
	}
	dec := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s)
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		return b
	}
	c, err := f.n.Policy().ApprovalFor("e2")
	if err != nil {
		t.Fatal(err)
	}
	c.Approval.Assertion = &policy.Assertion{Credential: dec(got.RawID), AuthenticatorData: dec(got.Response.AuthenticatorData),
		ClientDataJSON: dec(got.Response.ClientDataJSON), Signature: dec(got.Response.Signature)}
	if res := f.submitAs(t, ctx, "bob", c); res.Applied || !strings.Contains(res.Reason, "made for another command") {
		t.Fatalf("bob's key with an assertion made for another command: %+v", res)
	}
	if n := len(f.n.Policy().Requests["e2"].Approvals); n != 0 {
		t.Fatalf("e2 has %d approvals", n)
	}

	// The approval is in the journal.
	br.do("audit", chromedp.Navigate(sb.URL()+"/audit?since=1h"))
	if a := br.text(`document.getElementById("audit").innerText`); !strings.Contains(a, policy.KindApproveRequest) {
		t.Errorf("the audit page lacks the approval:\n%s", a)
	}
	br.shot("audit-approval")

	// bob removes his passkey from the page: with passkeys required of his
	// role that is a proposal, and nothing is removed yet.
	br.do("remove bob's passkey", chromedp.Navigate(sb.URL()+"/passkeys"), chromedp.Click(chromedp.CSS(`#passkeys button.remove`)))
	nodetest.WaitTrue(t, 20*time.Second, "the removal answered", func() bool {
		said = br.poll(`(document.querySelector(".flash") || document.getElementById("error") || {}).textContent || ""`)
		return said != ""
	})
	if !strings.Contains(said, "Removing passkey \"bob's laptop\" proposed as p-") || len(f.n.Policy().Users["bob"].Passkeys) != 1 {
		t.Errorf("removing bob's passkey: %q, %d passkeys", said, len(f.n.Policy().Users["bob"].Passkeys))
	}
}
