package console

// Passkeys in the console.
//
// Enrolling: the browser's authenticator makes a credential for RP ID
// localhost; go-webauthn checks the registration ceremony (challenge,
// origin, user verified, the attestation's self-consistency); the console
// then submits user.passkey.add signed with the session's key, which in a
// sealed federation is a proposal for the quorum when the user approves.
//
// Approving: the console fixes the approval command first (its ID, time,
// signer and the digest of exactly what is approved) and asks the
// authenticator for a user-verified assertion whose challenge is
// policy.ApprovalChallenge of that command. It then signs that command, with
// the assertion inside, unchanged. The console is not trusted for any of
// it: every replica verifies the assertion against the passkey the policy
// enrolled, so an assertion made for another command, or none where the
// role requires one, is refused whoever submits it.

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/protocol/webauthncose"
	"github.com/go-webauthn/webauthn/webauthn"

	"github.com/custos-cctv/custos/node"
	"github.com/custos-cctv/custos/policy"
)

const (
	// rpID is the WebAuthn relying party: the console is on the admin's own
	// machine, which browsers take as a secure origin over plain HTTP.
	rpID = "localhost"
	// ceremonyLife bounds how long a started enrolment or approval waits
	// for the authenticator; well inside the leader's bound on a command's
	// time.
	ceremonyLife = 2 * time.Minute
)

// pendingApproval is an approval command fixed for a passkey ceremony.
type pendingApproval struct {
	id      string // the request or proposal
	fid     string
	cmd     *policy.Command
	expires time.Time
}

// pendingEnrolment is a registration ceremony under way.
type pendingEnrolment struct {
	data    *webauthn.SessionData
	expires time.Time
}

func newRelyingParty(origin string) (*webauthn.WebAuthn, error) {
	return webauthn.New(&webauthn.Config{
		RPID:          rpID,
		RPDisplayName: "Custos",
		RPOrigins:     []string{origin},
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementPreferred,
			UserVerification: protocol.VerificationRequired,
		},
		AttestationPreference: protocol.PreferNoAttestation,
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Enforce: true, Timeout: time.Minute, TimeoutUVD: time.Minute},
			Registration: webauthn.TimeoutConfig{Enforce: true, Timeout: time.Minute, TimeoutUVD: time.Minute},
		},
	})
}

// waUser is a policy user as go-webauthn sees one. Its handle is a hash of
// the federation and the name: stable, and not the name itself.
type waUser struct {
	handle []byte
	name   string
	creds  []webauthn.Credential
}

func (u *waUser) WebAuthnID() []byte                         { return u.handle }
func (u *waUser) WebAuthnName() string                       { return u.name }
func (u *waUser) WebAuthnDisplayName() string                { return u.name }
func (u *waUser) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func waUserOf(pol *policy.State, name string) *waUser {
	h := sha256.Sum256([]byte("custos/webauthn-user\x00" + pol.FederationID + "\x00" + name))
	u := &waUser{handle: h[:], name: name}
	if pu := pol.Users[name]; pu != nil {
		for _, p := range pu.Passkeys {
			u.creds = append(u.creds, webauthn.Credential{ID: p.ID, PublicKey: p.PublicKey,
				Authenticator: webauthn.Authenticator{SignCount: p.Counter}})
		}
	}
	return u
}

// jsonAnswer writes v as JSON with status.
func jsonAnswer(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, status int, err error) {
	jsonAnswer(w, status, map[string]string{"error": err.Error()})
}

type passkeyRow struct {
	Name, ID, Added, AddedBy string
}

type passkeysData struct {
	Passkeys []passkeyRow
	Role     string
	Required []string // the roles that approve with a passkey
	MustUse  bool     // the session's user approves with one
}

// passkeysPage lists the session user's passkeys and enrols another.
func (p *pages) passkeysPage(w http.ResponseWriter, r *http.Request, ss *session) {
	pol := p.policyOrFail(w, r, ss)
	if pol == nil {
		return
	}
	var d passkeysData
	if u := pol.Users[ss.user]; u != nil {
		d.Role = string(u.Role)
		d.MustUse = pol.PasskeyRequired(u.Role)
		for _, k := range u.Passkeys {
			d.Passkeys = append(d.Passkeys, passkeyRow{Name: k.Name, ID: policy.PasskeyIDText(k.ID), Added: stamp(k.Added), AddedBy: k.AddedBy})
		}
	}
	for _, role := range pol.PasskeyRoles {
		d.Required = append(d.Required, string(role))
	}
	p.render(w, http.StatusOK, "passkeys", ss, ss.lang, d)
}

// enrolBegin starts a registration ceremony for the session's user.
func (p *pages) enrolBegin(w http.ResponseWriter, r *http.Request, ss *session) {
	pol, err := p.policyOf(r)
	if err != nil {
		jsonError(w, http.StatusServiceUnavailable, err)
		return
	}
	u := waUserOf(pol, ss.user)
	if len(u.creds) >= policy.MaxPasskeys {
		jsonError(w, http.StatusConflict, fmt.Errorf("%s has %d passkeys, at most %d: remove one first", ss.user, len(u.creds), policy.MaxPasskeys))
		return
	}
	var exclude []protocol.CredentialDescriptor
	for _, c := range u.creds {
		exclude = append(exclude, protocol.CredentialDescriptor{Type: protocol.PublicKeyCredentialType, CredentialID: c.ID})
	}
	creation, data, err := p.s.wa.BeginRegistration(u, webauthn.WithExclusions(exclude),
		// The policy verifies ES256 and EdDSA passkeys only.
		webauthn.WithCredentialParameters([]protocol.CredentialParameter{
			{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgES256},
			{Type: protocol.PublicKeyCredentialType, Algorithm: webauthncose.AlgEdDSA},
		}))
	if err != nil {
		jsonError(w, http.StatusInternalServerError, err)
		return
	}
	p.s.mu.Lock()
	ss.enrol = &pendingEnrolment{data: data, expires: time.Now().Add(ceremonyLife)}
	p.s.mu.Unlock()
	jsonAnswer(w, http.StatusOK, creation)
}

// enrolFinish checks the registration ceremony and submits the passkey to
// the policy (a proposal when that is governance).
func (p *pages) enrolFinish(w http.ResponseWriter, r *http.Request, ss *session) {
	name := strings.TrimSpace(r.URL.Query().Get("name"))
	p.s.mu.Lock()
	pending := ss.enrol
	ss.enrol = nil // one answer per ceremony
	p.s.mu.Unlock()
	switch {
	case pending == nil || time.Now().After(pending.expires):
		jsonError(w, http.StatusConflict, errors.New("no passkey enrolment is under way (or it took too long): start again"))
		return
	case name == "" || len(name) > policy.MaxPasskeyName || !utf8.ValidString(name):
		jsonError(w, http.StatusBadRequest, fmt.Errorf("a passkey needs a name of 1 to %d bytes, such as the device it lives on", policy.MaxPasskeyName))
		return
	}
	pol, err := p.policyOf(r)
	if err != nil {
		jsonError(w, http.StatusServiceUnavailable, err)
		return
	}
	cred, err := p.s.wa.FinishRegistration(waUserOf(pol, ss.user), *pending.data, r)
	if err != nil {
		jsonError(w, http.StatusBadRequest, fmt.Errorf("the passkey's registration does not verify: %s", webauthnError(err)))
		return
	}
	// The algorithm as the key says it, not as the browser's JSON does.
	alg, err := policy.PasskeyAlgorithm(cred.PublicKey)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err)
		return
	}
	c, err := policy.NewPasskey(ss.user, cred.ID, cred.PublicKey, alg, rpID, name, cred.Authenticator.SignCount)
	if err != nil {
		jsonError(w, http.StatusBadRequest, err)
		return
	}
	var proposal string
	if status, err := p.applied(r, func(ctx context.Context) (res node.ApplyResult, err error) {
		res, proposal, err = node.SubmitGoverned(ctx, p.s.cfg.Dir, pol, ss.key, ss.user, c)
		return res, err
	}); err != nil {
		jsonError(w, status, err)
		return
	}
	msg := fmt.Sprintf(tr(ss.lang, "flash.passkey"), name, ss.user)
	if proposal != "" {
		msg = fmt.Sprintf(tr(ss.lang, "flash.passkey.proposed"), name, ss.user, proposal)
	}
	p.s.mu.Lock()
	ss.flash = msg
	p.s.mu.Unlock()
	p.s.cfg.Logf("console: %s enrolled passkey %q (proposal %q)", ss.user, name, proposal)
	jsonAnswer(w, http.StatusOK, map[string]string{"redirect": "/passkeys", "proposal": proposal})
}

// removePasskey withdraws one of the session user's passkeys (a form).
func (p *pages) removePasskey(w http.ResponseWriter, r *http.Request, ss *session) {
	pol := p.policyOrFail(w, r, ss)
	if pol == nil {
		return
	}
	id := r.PathValue("id")
	u := pol.Users[ss.user]
	i := -1
	if u != nil {
		i = slices.IndexFunc(u.Passkeys, func(k policy.Passkey) bool { return policy.PasskeyIDText(k.ID) == id })
	}
	if i < 0 {
		p.fail(w, http.StatusNotFound, ss, fmt.Errorf("%s has no passkey %q", ss.user, id))
		return
	}
	var proposal string
	if status, err := p.applied(r, func(ctx context.Context) (res node.ApplyResult, err error) {
		res, proposal, err = node.SubmitGoverned(ctx, p.s.cfg.Dir, pol, ss.key, ss.user, policy.NewPasskeyRemoval(ss.user, u.Passkeys[i].ID))
		return res, err
	}); err != nil {
		p.fail(w, status, ss, err)
		return
	}
	p.s.mu.Lock()
	ss.flash = fmt.Sprintf(tr(ss.lang, "flash.passkey.removed"), u.Passkeys[i].Name)
	if proposal != "" {
		ss.flash = fmt.Sprintf(tr(ss.lang, "flash.passkey.remove.proposed"), u.Passkeys[i].Name, proposal)
	}
	p.s.mu.Unlock()
	http.Redirect(w, r, "/passkeys", http.StatusSeeOther)
}

// usesPasskey: the console approves with a passkey for a user who has one
// or whose role requires one.
func usesPasskey(pol *policy.State, user string) bool {
	u := pol.Users[user]
	return u != nil && (len(u.Passkeys) > 0 || pol.PasskeyRequired(u.Role))
}

// approveBegin fixes the approval command of id and asks the browser for
// an assertion over it.
func (p *pages) approveBegin(w http.ResponseWriter, r *http.Request, ss *session) {
	pol, err := p.policyOf(r)
	if err != nil {
		jsonError(w, http.StatusServiceUnavailable, err)
		return
	}
	c, err := pol.ApprovalFor(r.PathValue("id"))
	if err != nil {
		jsonError(w, http.StatusNotFound, err)
		return
	}
	u := waUserOf(pol, ss.user)
	if len(u.creds) == 0 {
		jsonError(w, http.StatusConflict, fmt.Errorf("%s has no passkey: enrol one on the Passkeys page first", ss.user))
		return
	}
	node.PrepareCommand(c, ss.user)
	assertion, _, err := p.s.wa.BeginLogin(u, webauthn.WithChallenge(policy.ApprovalChallenge(pol.FederationID, c)),
		webauthn.WithUserVerification(protocol.VerificationRequired))
	if err != nil {
		jsonError(w, http.StatusInternalServerError, err)
		return
	}
	p.s.mu.Lock()
	ss.approval = &pendingApproval{id: c.Approval.Request, fid: pol.FederationID, cmd: c, expires: time.Now().Add(ceremonyLife)}
	p.s.mu.Unlock()
	jsonAnswer(w, http.StatusOK, assertion)
}

// approveFinish puts the browser's assertion into the fixed approval
// command, signs it with the session's key and submits it.
func (p *pages) approveFinish(w http.ResponseWriter, r *http.Request, ss *session) {
	id := r.PathValue("id")
	p.s.mu.Lock()
	pending := ss.approval
	if pending != nil && pending.id == id {
		ss.approval = nil // one answer per ceremony
	}
	p.s.mu.Unlock()
	if pending == nil || pending.id != id || time.Now().After(pending.expires) {
		jsonError(w, http.StatusConflict, fmt.Errorf("no approval of %q is under way (or it took too long): start again", id))
		return
	}
	parsed, err := protocol.ParseCredentialRequestResponseBody(r.Body)
	if err != nil {
		jsonError(w, http.StatusBadRequest, fmt.Errorf("the passkey's answer does not parse: %s", webauthnError(err)))
		return
	}
	c := pending.cmd
	// The console signs only the command the assertion was made for: an
	// answer to an earlier ceremony (another tab started a new one since)
	// is refused here, not signed for the replicas to refuse.
	if want := base64.RawURLEncoding.EncodeToString(policy.ApprovalChallenge(pending.fid, c)); parsed.Response.CollectedClientData.Challenge != want {
		jsonError(w, http.StatusConflict, errors.New("the passkey answered another approval than the one under way (was it started twice?): start again"))
		return
	}
	c.Approval.Assertion = &policy.Assertion{Credential: parsed.RawID, AuthenticatorData: parsed.Raw.AssertionResponse.AuthenticatorData,
		ClientDataJSON: parsed.Raw.AssertionResponse.ClientDataJSON, Signature: parsed.Raw.AssertionResponse.Signature}
	env, err := node.SignPrepared(ss.key, pending.fid, c)
	if err != nil {
		jsonError(w, http.StatusInternalServerError, err)
		return
	}
	if status, err := p.applied(r, func(ctx context.Context) (node.ApplyResult, error) { return node.SubmitVia(ctx, p.s.cfg.Dir, env) }); err != nil {
		jsonError(w, status, err)
		return
	}
	p.s.mu.Lock()
	ss.flash = fmt.Sprintf(tr(ss.lang, "flash.approved.passkey"), id, ss.user)
	p.s.mu.Unlock()
	jsonAnswer(w, http.StatusOK, map[string]string{"redirect": "/requests"})
}

// webauthnError is go-webauthn's error with its detail, which says what
// failed.
func webauthnError(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.DevInfo != "" {
		return pe.Details + ": " + pe.DevInfo
	}
	return err.Error()
}
