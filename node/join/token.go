package join

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

// A join token is one line an admin hands to whoever installs a node:
//
//	custos1.<base64url(JSON body)>.<base64url(OpenPGP signature of the body)>
//
// The body names the federation and the genesis it must accept (policy.Anchor),
// the invite and its one-time secret, the datacenters to contact, the
// other Raft voters, and the inviting admin's public key, which made the
// signature. The secret never
// leaves the joining node: it signs the node's own key with it (the
// redeem's proof), and only that proof travels.
//
// What the signature proves, and when. A joining node has nothing but the
// token: DecodeToken checks that the key the token carries made the
// signature (strictly: one binary-mode packet, hashed subpackets only, not
// dated in the future), which proves the token was not altered since that
// key signed it, and nothing yet about who holds the key. Once the node's
// replica holds its own membership, checkJoin checks that key against the
// committed policy: the invite must exist, have been made by an admin who
// is current (not revoked) and whose key is the token's signer, and name
// this node's role and name; otherwise the node undoes its join and stops.
const TokenPrefix = "custos1."

// MaxToken bounds what we parse: a token is a few kilobytes.
const MaxToken = 32 << 10

// Token is a decoded join token.
type Token struct {
	Version     int           `json:"v"`
	Anchor      policy.Anchor `json:"anchor"`
	Invite      string        `json:"invite"`
	Secret      []byte        `json:"secret"` // 32-byte seed of the invite's one-time key
	Role        string        `json:"role"`
	Name        string        `json:"name"`
	Site        string        `json:"site,omitempty"`
	Expires     time.Time     `json:"expires"`
	Datacenters []TokenPeer   `json:"datacenters"`
	// Voters are the other Raft voters (witnesses) when the token was
	// made. Any voter may lead, and a new node admits only its seeds
	// until its replica names its peers: a witness leading when the node
	// joined could otherwise never bring it the log.
	Voters   []TokenPeer `json:"voters,omitempty"`
	AdminKey []byte      `json:"admin_key"` // binary OpenPGP public key of the signer

	// signer is the fingerprint of AdminKey, set once DecodeToken has
	// checked the signature.
	signer string
}

// Signer is the fingerprint of the key that signed the token (empty on a
// token DecodeToken did not return).
func (t *Token) Signer() string { return t.signer }

// TokenPeer is a datacenter (or another voter) a joining node contacts.
type TokenPeer struct {
	Name      string `json:"name"`
	PublicKey string `json:"public_key"`
	Endpoint  string `json:"endpoint"`
}

// EncodeToken signs a token with the admin's key.
func EncodeToken(t *Token, sign func(msg []byte) ([]byte, error)) (string, error) {
	body, err := json.Marshal(t)
	if err != nil {
		return "", err
	}
	sig, err := sign(append([]byte("custos/token/v1\x00"), body...))
	if err != nil {
		return "", err
	}
	enc := base64.RawURLEncoding
	return TokenPrefix + enc.EncodeToString(body) + "." + enc.EncodeToString(sig), nil
}

// ErrBadToken is wrapped by every token error.
var ErrBadToken = errors.New("bad join token")

// DecodeToken parses and checks a token: its form, the signature by the
// admin key it carries (keys.VerifyAdminSignatureStrict: one binary-mode
// signature packet, hashed subpackets only, dated no later than now plus
// MaxClockSkew), its expiry at now, and its fields. It cannot prove that
// the key belongs to an admin of the federation: the joining node checks
// that against the policy once it holds it (checkJoin).
func DecodeToken(s string, now time.Time) (*Token, error) {
	bad := func(format string, a ...any) (*Token, error) {
		return nil, fmt.Errorf("%w: %s", ErrBadToken, fmt.Sprintf(format, a...))
	}
	s = strings.TrimSpace(s)
	if len(s) > MaxToken {
		return bad("longer than %d bytes", MaxToken)
	}
	rest, ok := strings.CutPrefix(s, TokenPrefix)
	if !ok {
		return bad("it must start with %q", TokenPrefix)
	}
	b64body, b64sig, ok := strings.Cut(rest, ".")
	if !ok {
		return bad("missing signature part")
	}
	enc := base64.RawURLEncoding
	body, err := enc.DecodeString(b64body)
	if err != nil {
		return bad("body is not base64url")
	}
	sig, err := enc.DecodeString(b64sig)
	if err != nil {
		return bad("signature is not base64url")
	}
	var t Token
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return bad("body: %v", err)
	}
	if t.Version != 1 {
		return bad("version %d (this custos reads version 1)", t.Version)
	}
	fp, _, err := keys.VerifyAdminSignatureStrict(t.AdminKey, append([]byte("custos/token/v1\x00"), body...), sig, now, MaxClockSkew)
	switch {
	case errors.Is(err, keys.ErrSignatureForm):
		return bad("the signature is not one binary signature with hashed subpackets only, as custos invite makes them")
	case errors.Is(err, keys.ErrSignatureInFuture):
		return bad("the signature is dated in the future (is this machine's clock right?): %v", err)
	case err != nil:
		return bad("the signature does not verify (altered or forged token)")
	}
	t.signer = fp
	if !now.Before(t.Expires) {
		return bad("expired at %s", t.Expires.UTC().Format(time.RFC3339))
	}
	if len(t.Secret) != 32 || t.Invite == "" || t.Anchor.Federation == "" || t.Anchor.AdminFP == "" || t.Anchor.NodeKey == "" {
		return bad("incomplete")
	}
	if len(t.Datacenters) == 0 {
		return bad("names no datacenter to contact")
	}
	for _, group := range []struct {
		what  string
		peers []TokenPeer
	}{{"datacenter", t.Datacenters}, {"voter", t.Voters}} {
		for _, p := range group.peers {
			if _, err := keys.ParseNodePublic(p.PublicKey); err != nil {
				return bad("%s %q: %v", group.what, p.Name, err)
			}
			if ap, err := netip.ParseAddrPort(p.Endpoint); err != nil || ap.Port() == 0 || ap.Addr().IsUnspecified() {
				return bad("%s %q: endpoint %q", group.what, p.Name, p.Endpoint)
			}
		}
	}
	return &t, nil
}

// Redeem builds the redeem envelope for a joining node's key and endpoint.
// custodian is a joining datacenter's custodian public key (nil otherwise).
func (t *Token) Redeem(pub keys.NodePublic, endpoint string, custodian []byte, now time.Time) (policy.Envelope, error) {
	_, priv, err := policy.InviteKeyFromSecret(t.Secret)
	if err != nil {
		return policy.Envelope{}, err
	}
	defer clear(priv)
	r := &policy.Redeem{Invite: t.Invite, PublicKey: pub.String(), Endpoint: endpoint, Custodian: custodian}
	r.Proof = ed25519Sign(priv, policy.RedeemSignedBytes(r))
	c := &policy.Command{ID: policy.NewCommandID(), Time: now.UTC(), Kind: policy.KindRedeemInvite, Redeem: r}
	body, err := policy.EncodeCommand(c)
	if err != nil {
		return policy.Envelope{}, err
	}
	return policy.Envelope{Body: body}, nil
}

func ed25519Sign(priv []byte, msg []byte) []byte { return ed25519.Sign(priv, msg) }
