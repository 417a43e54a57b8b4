package policy

// Passkeys: approvals that a stolen key file cannot give.
//
// An approval is an OpenPGP signature, so a key file and its passphrase
// approve wherever they are. The policy can require, per role (admin,
// approver), that an approval also carry a WebAuthn assertion made by a
// passkey the policy enrolled for the approver, user-verified (PIN or
// biometrics) and made for exactly that approval command: its challenge is
// ApprovalChallenge of the command. Every replica verifies the assertion in
// Apply, deterministically (the command's time is the only clock), against
// the passkey's public key in the policy:
//
//   - user.passkey.add enrols a passkey (credential ID, COSE public key,
//     algorithm, RP ID, a name) for a user, signed by that user or an
//     admin. The console verifies the registration ceremony before it
//     submits the command; the policy checks shape and bounds. A passkey
//     decides who approves, so adding one to an admin or approver is
//     governance: once the federation is sealed it is a proposal the quorum
//     approves, or a stolen key file could enrol the thief's own passkey.
//   - user.passkey.remove removes one, signed by that user or an admin;
//     removing any passkey of an admin or approver whose role requires one
//     is governance (it withdraws the approvals made with it).
//   - passkey.require sets the roles that approve with a passkey; it is
//     governance, and refused while it would leave fewer users able to
//     approve than a proposer and a quorum.
//
// An approval made with a passkey records the credential it used; while
// the approver's role requires a passkey, an approval counts only if it was
// made with a passkey that is still enrolled (so removing a lost
// authenticator withdraws what it approved, as revoking a key does). An
// assertion is verified whenever a command carries one, required or not.

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fxamacker/cbor/v2"
)

// Passkey command kinds.
const (
	KindAddPasskey      = "user.passkey.add"    // PasskeyChange with Passkey
	KindRemovePasskey   = "user.passkey.remove" // PasskeyChange with ID
	KindRequirePasskeys = "passkey.require"     // PasskeyRequirement: governance
)

// COSE algorithms a passkey may use.
const (
	AlgES256 = -7 // ECDSA P-256 with SHA-256
	AlgEdDSA = -8 // Ed25519
)

const (
	// MaxPasskeys bounds the passkeys of one user.
	MaxPasskeys = 8
	// MaxCredentialID is WebAuthn's bound on a credential ID, in bytes.
	MaxCredentialID = 1023
	// MaxCOSEKey bounds a passkey's COSE public key (an ES256 key is 77
	// bytes).
	MaxCOSEKey = 256
	// MaxPasskeyName bounds a passkey's name, in bytes.
	MaxPasskeyName = 64
	// Bounds of an assertion's parts.
	MaxAuthenticatorData  = 1024
	MaxClientDataJSON     = 2048
	MaxAssertionSignature = 128
)

// Passkey is a WebAuthn credential enrolled for a user.
type Passkey struct {
	ID        []byte `json:"id"`         // credential ID
	PublicKey []byte `json:"public_key"` // COSE_Key, as the authenticator made it
	Alg       int    `json:"alg"`        // AlgES256 or AlgEdDSA
	RPID      string `json:"rp_id"`      // the WebAuthn relying party ID, e.g. localhost
	Name      string `json:"name"`
	// Added and AddedBy are the time and signer of the command that
	// enrolled it; Apply sets them.
	Added   time.Time `json:"added,omitzero"`
	AddedBy string    `json:"added_by,omitempty"`
	// Counter is the last signature counter seen (0: the authenticator
	// keeps none).
	Counter uint32 `json:"counter,omitempty"`
}

// PasskeyChange is the payload of user.passkey.add (Passkey) and
// user.passkey.remove (ID).
type PasskeyChange struct {
	User    string   `json:"user"`
	Passkey *Passkey `json:"passkey,omitempty"`
	ID      []byte   `json:"id,omitempty"`
}

// PasskeyRequirement is the payload of passkey.require: the roles whose
// approvals carry a passkey assertion (none: no requirement).
type PasskeyRequirement struct {
	Roles []UserRole `json:"roles"`
}

// Assertion is a WebAuthn assertion as the browser returns it, raw bytes.
type Assertion struct {
	Credential        []byte `json:"credential"` // credential ID
	AuthenticatorData []byte `json:"authenticator_data"`
	ClientDataJSON    []byte `json:"client_data_json"`
	Signature         []byte `json:"signature"` // ES256: ASN.1 DER
}

// approvalChallengeDomain separates approval challenges from any other hash.
const approvalChallengeDomain = "custos/passkey-approval/v1\x00"

// ApprovalChallenge is the WebAuthn challenge of approval command c in the
// federation whose FederationID is federationID: SHA-256 of the domain
// string and, each as an 8-byte big-endian length and its bytes, the
// federation ID, c's ID, c's time (RFC 3339 with nanoseconds, UTC), signer
// and kind, and the approval's request (or proposal) ID and digest. It
// covers everything the command says but the assertion, so an assertion
// approves exactly one command.
func ApprovalChallenge(federationID string, c *Command) []byte {
	h := sha256.New()
	h.Write([]byte(approvalChallengeDomain))
	field := func(s string) {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(s))))
		h.Write([]byte(s))
	}
	var a Approval
	if c.Approval != nil {
		a = *c.Approval
	}
	field(federationID)
	field(c.ID)
	field(c.Time.UTC().Format(time.RFC3339Nano))
	field(c.Signer)
	field(c.Kind)
	field(a.Request)
	field(a.Digest)
	return h.Sum(nil)
}

// NewPasskey builds the user.passkey.add command that enrols a passkey for
// user, from what the registration ceremony gave (the console verifies it
// with go-webauthn first): the credential ID, its COSE public key and
// algorithm, the RP ID, a name for it and the authenticator's signature
// counter. It checks the passkey's shape as every replica will; the caller
// sets the command's ID, time and signer, signs and submits it (once the
// federation is sealed, enrolling an admin's or approver's passkey is a
// proposal: node.SubmitGoverned makes it one).
func NewPasskey(user string, id, coseKey []byte, alg int, rpID, name string, counter uint32) (*Command, error) {
	p := &Passkey{ID: bytes.Clone(id), PublicKey: bytes.Clone(coseKey), Alg: alg, RPID: rpID, Name: name, Counter: counter}
	if err := validName(user); err != nil {
		return nil, fmt.Errorf("passkey user: %w", err)
	}
	if err := checkPasskeyShape(p); err != nil {
		return nil, err
	}
	return &Command{Kind: KindAddPasskey, PasskeyChange: &PasskeyChange{User: user, Passkey: p}}, nil
}

// PasskeyAlgorithm is the COSE algorithm (label 3) of a passkey's public
// key, as the key itself says, for NewPasskey.
func PasskeyAlgorithm(key []byte) (int, error) {
	if len(key) == 0 || len(key) > MaxCOSEKey {
		return 0, fmt.Errorf("COSE key of %d bytes: want 1 to %d", len(key), MaxCOSEKey)
	}
	var k coseKey
	if err := coseDecMode.Unmarshal(key, &k); err != nil {
		return 0, fmt.Errorf("COSE key does not parse: %v", err)
	}
	return int(k.Alg), nil
}

// NewPasskeyRemoval builds the user.passkey.remove command of user's
// passkey with credential ID id.
func NewPasskeyRemoval(user string, id []byte) *Command {
	return &Command{Kind: KindRemovePasskey, PasskeyChange: &PasskeyChange{User: user, ID: bytes.Clone(id)}}
}

// PasskeyRequired reports whether users of role approve with a passkey.
func (s *State) PasskeyRequired(role UserRole) bool { return slices.Contains(s.PasskeyRoles, role) }

// ApprovalNeedsPasskey returns, when user's role approves with a passkey,
// the reason an approval without one is refused; nil otherwise.
func (s *State) ApprovalNeedsPasskey(user string) error {
	u := s.Users[user]
	if u == nil || !s.PasskeyRequired(u.Role) {
		return nil
	}
	return fmt.Errorf("role %s approves with a passkey: use the console (custos console)", u.Role)
}

// PasskeyIDText is a credential ID as WebAuthn writes it (base64url without
// padding): how an approval records the passkey it was made with.
func PasskeyIDText(id []byte) string { return base64.RawURLEncoding.EncodeToString(id) }

// canApprove reports whether u, a user who may approve, has what their
// role needs to: a passkey when the roles in required approve with one.
func canApprove(u *User, required []UserRole) bool {
	return !slices.Contains(required, u.Role) || len(u.Passkeys) > 0
}

// passkeyCounts reports whether approval a, by u, counts as far as
// passkeys go: when u's role requires one, a was made with a passkey u
// still has.
func (s *State) passkeyCounts(u *User, a Approval) bool {
	if !s.PasskeyRequired(u.Role) {
		return true
	}
	return a.Passkey != "" && slices.ContainsFunc(u.Passkeys, func(p Passkey) bool { return PasskeyIDText(p.ID) == a.Passkey })
}

// checkApprovalPasskey checks the passkey side of approval command c: an
// assertion is verified whenever there is one (never ignored), and is
// required when the signer's role requires it. It returns the credential
// to record in the approval ("" for none) and the change to make (the
// passkey's signature counter).
func (s *State) checkApprovalPasskey(c *Command) (string, func(), error) {
	a := c.Approval
	if a.Passkey != "" {
		return "", nil, errors.New("an approval's passkey is recorded by the policy from its assertion, not named in the command")
	}
	if a.Assertion == nil {
		return "", func() {}, s.ApprovalNeedsPasskey(c.Signer)
	}
	u := s.Users[c.Signer]
	i, counter, err := s.verifyAssertion(u, a.Assertion, ApprovalChallenge(s.FederationID, c), true)
	if err != nil {
		return "", nil, fmt.Errorf("the approval's passkey assertion is refused: %w", err)
	}
	id := bytes.Clone(u.Passkeys[i].ID)
	return PasskeyIDText(id), func() { s.setPasskeyCounter(u.Name, id, counter) }, nil
}

// setPasskeyCounter stores counter as the last signature counter of user's
// passkey id (verifyAssertion checked it is not below the stored one).
func (s *State) setPasskeyCounter(user string, id []byte, counter uint32) {
	u := s.Users[user]
	if u == nil {
		return
	}
	for i := range u.Passkeys {
		if bytes.Equal(u.Passkeys[i].ID, id) && counter > u.Passkeys[i].Counter {
			u.Passkeys[i].Counter = counter
		}
	}
}

// passkeyOwner is the user with a passkey of credential ID id, or "".
func (s *State) passkeyOwner(id []byte) string {
	for name, u := range s.Users {
		if slices.ContainsFunc(u.Passkeys, func(p Passkey) bool { return bytes.Equal(p.ID, id) }) {
			return name
		}
	}
	return ""
}

// Authenticator data flags (WebAuthn §6.1).
const (
	flagUP = 0x01 // user present
	flagUV = 0x04 // user verified
	flagAT = 0x40 // attested credential data included (registration only)
	flagED = 0x80 // extension data included
)

// verifyAssertion checks assertion a of user u over challenge (WebAuthn
// §7.2, without a clock): the credential is one of u's passkeys, the client
// data is a webauthn.get for challenge from the passkey's origin, the
// authenticator data names the passkey's RP ID with the user present and
// verified, the signature verifies with the passkey's key and, if
// counter, the signature counter moved forward. It returns the index of
// the passkey in u.Passkeys and the new counter.
func (s *State) verifyAssertion(u *User, a *Assertion, challenge []byte, counter bool) (int, uint32, error) {
	switch {
	case len(a.Credential) == 0 || len(a.Credential) > MaxCredentialID:
		return 0, 0, fmt.Errorf("credential ID of %d bytes: want 1 to %d", len(a.Credential), MaxCredentialID)
	case len(a.AuthenticatorData) < 37 || len(a.AuthenticatorData) > MaxAuthenticatorData:
		return 0, 0, fmt.Errorf("authenticator data of %d bytes: want 37 to %d", len(a.AuthenticatorData), MaxAuthenticatorData)
	case len(a.ClientDataJSON) == 0 || len(a.ClientDataJSON) > MaxClientDataJSON:
		return 0, 0, fmt.Errorf("clientDataJSON of %d bytes: want 1 to %d", len(a.ClientDataJSON), MaxClientDataJSON)
	case len(a.Signature) == 0 || len(a.Signature) > MaxAssertionSignature:
		return 0, 0, fmt.Errorf("signature of %d bytes: want 1 to %d", len(a.Signature), MaxAssertionSignature)
	}
	i := slices.IndexFunc(u.Passkeys, func(p Passkey) bool { return bytes.Equal(p.ID, a.Credential) })
	if i < 0 {
		if owner := s.passkeyOwner(a.Credential); owner != "" {
			return 0, 0, fmt.Errorf("made with a passkey of %q, not of %q", owner, u.Name)
		}
		return 0, 0, fmt.Errorf("made with passkey %s, which is not enrolled for %q", PasskeyIDText(a.Credential), u.Name)
	}
	pk := &u.Passkeys[i]

	var cd struct {
		Type        string `json:"type"`
		Challenge   string `json:"challenge"`
		Origin      string `json:"origin"`
		CrossOrigin bool   `json:"crossOrigin"`
		TopOrigin   string `json:"topOrigin"`
	}
	if err := json.Unmarshal(a.ClientDataJSON, &cd); err != nil {
		return 0, 0, fmt.Errorf("clientDataJSON does not parse: %v", err)
	}
	switch {
	case cd.Type != "webauthn.get":
		return 0, 0, fmt.Errorf("clientDataJSON has type %q, not webauthn.get", cd.Type)
	case cd.Challenge != base64.RawURLEncoding.EncodeToString(challenge):
		return 0, 0, errors.New("it was made for another command: its challenge is not this approval's (ApprovalChallenge)")
	case cd.CrossOrigin || cd.TopOrigin != "":
		return 0, 0, errors.New("it was made in a cross-origin frame")
	}
	if err := checkOrigin(cd.Origin, pk.RPID); err != nil {
		return 0, 0, err
	}

	ad := a.AuthenticatorData
	rp := sha256.Sum256([]byte(pk.RPID))
	flags := ad[32]
	switch {
	case !bytes.Equal(ad[:32], rp[:]):
		return 0, 0, fmt.Errorf("its authenticator data's rpIdHash is not SHA-256 of the passkey's RP ID %q", pk.RPID)
	case flags&flagUP == 0:
		return 0, 0, errors.New("the authenticator did not see the user present (flag UP)")
	case flags&flagUV == 0:
		return 0, 0, errors.New("the authenticator did not verify the user (flag UV: a PIN or biometrics is required)")
	case flags&flagAT != 0:
		return 0, 0, errors.New("its authenticator data carries a credential (flag AT): that is a registration, not an assertion")
	case flags&flagED == 0 && len(ad) != 37:
		return 0, 0, errors.New("its authenticator data has bytes after the counter but no extensions (flag ED)")
	}
	n := binary.BigEndian.Uint32(ad[33:37])

	pub, err := parseCOSEKey(pk.PublicKey, pk.Alg)
	if err != nil {
		return 0, 0, fmt.Errorf("passkey %q: %w", pk.Name, err)
	}
	cdh := sha256.Sum256(a.ClientDataJSON)
	signed := append(bytes.Clone(ad), cdh[:]...)
	if !verifyWith(pub, signed, a.Signature) {
		return 0, 0, fmt.Errorf("its signature does not verify with passkey %q", pk.Name)
	}
	// WebAuthn §7.2 step 21: a counter that does not move forward (once
	// either side is non-zero) means the authenticator may be cloned.
	if counter && (n != 0 || pk.Counter != 0) && n <= pk.Counter {
		return 0, 0, fmt.Errorf("its signature counter %d is not above the last one seen, %d: the authenticator may have been cloned", n, pk.Counter)
	}
	return i, n, nil
}

// checkOrigin: a passkey of RP ID localhost is used from the console on
// the approver's machine, http://localhost:PORT or http://127.0.0.1:PORT;
// any other from https://RPID.
func checkOrigin(origin, rpID string) error {
	if rpID == "localhost" {
		for _, prefix := range []string{"http://localhost:", "http://127.0.0.1:"} {
			if port, ok := strings.CutPrefix(origin, prefix); ok && validPort(port) {
				return nil
			}
		}
		return fmt.Errorf("its origin %q is not the console on the approver's machine (http://localhost:PORT or http://127.0.0.1:PORT)", origin)
	}
	if origin != "https://"+rpID {
		return fmt.Errorf("its origin %q is not https://%s", origin, rpID)
	}
	return nil
}

func validPort(p string) bool {
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && strconv.Itoa(n) == p
}

func verifyWith(pub any, msg, sig []byte) bool {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		d := sha256.Sum256(msg)
		return ecdsa.VerifyASN1(k, d[:], sig)
	case ed25519.PublicKey:
		return len(sig) == ed25519.SignatureSize && ed25519.Verify(k, msg, sig)
	}
	return false
}

// coseKey is an EC2 P-256 or OKP Ed25519 COSE_Key (RFC 9052 §7, RFC 9053).
type coseKey struct {
	Kty int64  `cbor:"1,keyasint"`
	Alg int64  `cbor:"3,keyasint"`
	Crv int64  `cbor:"-1,keyasint"`
	X   []byte `cbor:"-2,keyasint"`
	Y   []byte `cbor:"-3,keyasint,omitempty"`
}

var (
	coseDecMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			DupMapKey:         cbor.DupMapKeyEnforcedAPF,
			IndefLength:       cbor.IndefLengthForbidden,
			TagsMd:            cbor.TagsForbidden,
			MaxNestedLevels:   4,
			MaxArrayElements:  16,
			MaxMapPairs:       16,
			ExtraReturnErrors: cbor.ExtraDecErrorUnknownField,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	coseEncMode = func() cbor.EncMode {
		m, err := cbor.CTAP2EncOptions().EncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// parseCOSEKey parses a passkey's public key strictly: a COSE_Key map of
// exactly kty 2 (EC2), alg -7, crv 1 (P-256), x and y of 32 bytes each, a
// point on the curve; or kty 1 (OKP), alg -8, crv 6 (Ed25519), x of 32
// bytes — in CTAP2 canonical CBOR, as authenticators write it, with the
// algorithm alg. It returns an *ecdsa.PublicKey or an ed25519.PublicKey.
func parseCOSEKey(b []byte, alg int) (any, error) {
	if len(b) == 0 || len(b) > MaxCOSEKey {
		return nil, fmt.Errorf("COSE key of %d bytes: want 1 to %d", len(b), MaxCOSEKey)
	}
	var k coseKey
	if err := coseDecMode.Unmarshal(b, &k); err != nil {
		return nil, fmt.Errorf("COSE key does not parse: %v", err)
	}
	if again, err := coseEncMode.Marshal(k); err != nil || !bytes.Equal(again, b) {
		return nil, errors.New("COSE key is not a canonical EC2 or OKP key (only kty, alg, crv, x and y, in CTAP2 canonical CBOR)")
	}
	if k.Alg != int64(alg) {
		return nil, fmt.Errorf("COSE key has alg %d, but the passkey says %d", k.Alg, alg)
	}
	switch {
	case k.Kty == 2 && k.Alg == AlgES256 && k.Crv == 1:
		if len(k.X) != 32 || len(k.Y) != 32 {
			return nil, errors.New("COSE key: a P-256 point needs x and y of 32 bytes each")
		}
		pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), append(append([]byte{4}, k.X...), k.Y...))
		if err != nil {
			return nil, fmt.Errorf("COSE key is not a P-256 point: %v", err)
		}
		return pub, nil
	case k.Kty == 1 && k.Alg == AlgEdDSA && k.Crv == 6:
		if len(k.X) != ed25519.PublicKeySize || k.Y != nil {
			return nil, errors.New("COSE key: an Ed25519 key is x of 32 bytes and no y")
		}
		return ed25519.PublicKey(bytes.Clone(k.X)), nil
	}
	return nil, fmt.Errorf("COSE key of kty %d, alg %d, crv %d: want EC2 P-256 ES256 (2, -7, 1) or OKP Ed25519 EdDSA (1, -8, 6)", k.Kty, k.Alg, k.Crv)
}

// checkPasskeyShape checks what a passkey is, whatever the state holds.
func checkPasskeyShape(p *Passkey) error {
	switch {
	case len(p.ID) == 0 || len(p.ID) > MaxCredentialID:
		return fmt.Errorf("credential ID of %d bytes: want 1 to %d", len(p.ID), MaxCredentialID)
	case p.Alg != AlgES256 && p.Alg != AlgEdDSA:
		return fmt.Errorf("algorithm %d: want ES256 (%d) or EdDSA (%d)", p.Alg, AlgES256, AlgEdDSA)
	case !p.Added.IsZero() || p.AddedBy != "":
		return errors.New("added and added_by are set by the policy")
	}
	if _, err := parseCOSEKey(p.PublicKey, p.Alg); err != nil {
		return err
	}
	if err := validRPID(p.RPID); err != nil {
		return err
	}
	if err := checkText("passkey name", p.Name); err != nil {
		return err
	}
	if len(p.Name) > MaxPasskeyName {
		return fmt.Errorf("passkey name of %d bytes is longer than %d", len(p.Name), MaxPasskeyName)
	}
	return nil
}

// validRPID accepts localhost or a lower-case DNS name (not an IP
// address): what WebAuthn takes as a relying party ID.
func validRPID(id string) error {
	bad := fmt.Errorf("RP ID %q: want localhost or a lower-case domain name such as custos.example.com", id)
	if id == "" || len(id) > 253 {
		return bad
	}
	labels := strings.Split(id, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return bad
		}
		for i := range len(l) {
			c := l[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return bad
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return bad // an IPv4 address, or a name no browser takes as an RP ID
	}
	return nil
}

// passkeyUser is the user a passkey command names, or nil.
func (s *State) passkeyUser(c *Command) *User {
	if c.PasskeyChange == nil {
		return nil
	}
	return s.Users[c.PasskeyChange.User]
}

func (s *State) planAddPasskey(p *PasskeyChange, c *Command) (func(), error) {
	if p == nil || p.Passkey == nil {
		return nil, errors.New("no passkey to add")
	}
	if p.ID != nil {
		return nil, errors.New("a passkey to add is given whole (passkey), not by id")
	}
	u := s.Users[p.User]
	if u == nil || u.Revoked {
		return nil, fmt.Errorf("no active user %q", p.User)
	}
	if err := checkPasskeyShape(p.Passkey); err != nil {
		return nil, fmt.Errorf("passkey for %q: %w", u.Name, err)
	}
	if len(u.Passkeys) >= MaxPasskeys {
		return nil, fmt.Errorf("user %q has %d passkeys, at most %d: remove one first", u.Name, len(u.Passkeys), MaxPasskeys)
	}
	if owner := s.passkeyOwner(p.Passkey.ID); owner != "" {
		return nil, fmt.Errorf("passkey %s is already enrolled for %q", PasskeyIDText(p.Passkey.ID), owner)
	}
	np := clonePasskey(*p.Passkey)
	np.Added, np.AddedBy = c.Time, c.Signer
	return func() { u.Passkeys = append(u.Passkeys, np) }, nil
}

func (s *State) planRemovePasskey(p *PasskeyChange) (func(), error) {
	if p == nil || len(p.ID) == 0 || p.Passkey != nil {
		return nil, errors.New("name the passkey to remove by its credential id")
	}
	u := s.Users[p.User]
	if u == nil {
		return nil, fmt.Errorf("no user %q", p.User)
	}
	i := slices.IndexFunc(u.Passkeys, func(k Passkey) bool { return bytes.Equal(k.ID, p.ID) })
	if i < 0 {
		return nil, fmt.Errorf("user %q has no passkey %s", u.Name, PasskeyIDText(p.ID))
	}
	return func() {
		u.Passkeys = slices.Delete(slices.Clone(u.Passkeys), i, i+1)
		if len(u.Passkeys) == 0 {
			u.Passkeys = nil
		}
	}, nil
}

func (s *State) planRequirePasskeys(r *PasskeyRequirement, c *Command) (func(), error) {
	if r == nil {
		return nil, errors.New("no passkey requirement")
	}
	var roles []UserRole
	for _, role := range r.Roles {
		if !powerful(role) {
			return nil, fmt.Errorf("role %q never approves: passkeys are required of roles admin and approver", role)
		}
		if slices.Contains(roles, role) {
			return nil, fmt.Errorf("role %s named twice", role)
		}
		roles = append(roles, role)
	}
	slices.Sort(roles)
	if len(roles) > 0 {
		// Lock-out: a requirement nobody can meet stops every approval,
		// the ones that would lift it included.
		at := s.later(c.Time)
		if n, m := len(s.approversUnder(roles, at)), s.ApprovalThreshold(); n < m+1 {
			return nil, fmt.Errorf("requiring passkeys of %v would leave %d users who can approve, and a proposer and a quorum of %d need %d: enrol their passkeys first (custos console), then require them",
				roles, n, m, m+1)
		}
	}
	return func() { s.PasskeyRoles = roles }, nil
}

func clonePasskey(p Passkey) Passkey {
	p.ID = bytes.Clone(p.ID)
	p.PublicKey = bytes.Clone(p.PublicKey)
	return p
}

func clonePasskeys(ps []Passkey) []Passkey {
	if ps == nil {
		return nil
	}
	out := make([]Passkey, len(ps))
	for i, p := range ps {
		out[i] = clonePasskey(p)
	}
	return out
}

// cloneApprovals copies approvals and the assertions they hold.
func cloneApprovals(as []Approval) []Approval {
	out := slices.Clone(as)
	for i := range out {
		if a := out[i].Assertion; a != nil {
			out[i].Assertion = &Assertion{Credential: bytes.Clone(a.Credential), AuthenticatorData: bytes.Clone(a.AuthenticatorData),
				ClientDataJSON: bytes.Clone(a.ClientDataJSON), Signature: bytes.Clone(a.Signature)}
		}
	}
	return out
}
