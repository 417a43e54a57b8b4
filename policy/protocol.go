package policy

// Protocol versions, for rolling upgrades. A federation upgrades one node
// at a time, so for a while replicas of two releases apply one log. Each
// command kind has the protocol in which its present meaning was fixed
// (kindProtocol; 1 unless listed). A command of a kind past protocol 1 says
// so in its body (Command.Protocol, stamped by EncodeCommand and covered by
// the signatures), so a replica can tell "newer than me" from "malformed"
// without understanding the rest:
//
//   - a replica whose Protocol is lower than a command needs never applies
//     it, nor refuses it (either would make its state differ from the
//     upgraded replicas'): Apply returns ErrNewerProtocol, and the node's
//     replica stops at that entry, says so and serves nothing until the
//     node runs a release that knows it (node/policystore);
//   - the leader refuses such a command before it enters the log while any
//     member of the federation has not reported a protocol that knows it
//     (node's feature gate), so in a federation upgraded as documented no
//     replica ever stops;
//   - a command that claims less than its kind needs is refused by every
//     replica alike.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// kindProtocol lists the kinds whose meaning is newer than protocol 1.
// Passkeys (approvals with a WebAuthn assertion, passkey.require) came in
// protocol 2: a protocol-1 replica would apply an approval without the
// assertion it does not know to check.
var kindProtocol = map[string]int{
	KindAddPasskey:      2,
	KindRemovePasskey:   2,
	KindRequirePasskeys: 2,
}

// KindProtocol is the protocol a command of kind needs (1 for the kinds of
// the first release and for kinds this release does not know).
func KindProtocol(kind string) int {
	if p, ok := kindProtocol[kind]; ok {
		return p
	}
	return 1
}

// Gated lists the kinds that need a protocol higher than 1, with it.
func Gated() map[string]int {
	out := make(map[string]int, len(kindProtocol))
	for k, p := range kindProtocol {
		out[k] = p
	}
	return out
}

// ErrNewerProtocol marks a command of a protocol newer than this release's.
var ErrNewerProtocol = errors.New("policy: the command needs a newer protocol")

// NewerError is a command this release cannot apply yet.
type NewerError struct {
	Kind string
	Need int // the protocol it needs
}

func (e *NewerError) Error() string {
	return fmt.Sprintf("policy: a %s command needs protocol %d and this release speaks %d: upgrade custos on this node", e.Kind, e.Need, Protocol)
}

func (e *NewerError) Is(target error) bool { return target == ErrNewerProtocol }

// Needs reads, leniently, the kind and protocol a command body declares,
// and the protocol it needs: the larger of its declaration and what this
// release knows of its kind. It reads only those two fields, so a body
// with fields this release does not know still answers.
func Needs(body []byte) (kind string, need int) {
	kind, declared, derived := needsAt(body, 0)
	return kind, max(declared, derived)
}

// needsAt is the kind, the protocol the body declares and the one its kind
// (and a proposal's body) needs.
func needsAt(body []byte, depth int) (kind string, declared, derived int) {
	var probe struct {
		Kind     string `json:"kind"`
		Protocol int    `json:"protocol"`
		Proposal *struct {
			Body []byte `json:"body"`
		} `json:"proposal"`
		Camera *struct {
			Source string `json:"source"`
		} `json:"camera"`
	}
	if len(body) > MaxEnvelope || json.NewDecoder(bytes.NewReader(body)).Decode(&probe) != nil {
		return "", 0, 1
	}
	derived = KindProtocol(probe.Kind)
	if probe.Camera != nil {
		derived = max(derived, sourceProtocol(probe.Camera.Source))
	}
	if probe.Proposal != nil && depth == 0 {
		// A proposal executes its body when the quorum approves it: it
		// needs what the body needs, from the moment it is made.
		_, d, inner := needsAt(probe.Proposal.Body, depth+1)
		derived = max(derived, d, inner)
	}
	return probe.Kind, probe.Protocol, derived
}

// sourceProtocol is the protocol a camera source needs: rtsps:// (RTSP
// over TLS) and a synthetic source's codec parameter (the H.265 clip)
// came in protocol 2, and a protocol-1 replica would refuse the camera
// that upgraded ones add.
func sourceProtocol(src string) int {
	u, err := url.Parse(src)
	if err != nil {
		return 1
	}
	switch {
	case strings.EqualFold(u.Scheme, "rtsps"):
		return 2
	case u.Scheme == "synthetic":
		if q, err := url.ParseQuery(u.RawQuery); err == nil && q.Has("codec") {
			return 2
		}
	}
	return 1
}

// stampOK tells whether a body declares exactly what it needs: nothing
// for protocol 1, else the protocol.
func stampOK(body []byte) (ok bool, declared, derived int) {
	_, declared, derived = needsAt(body, 0)
	if derived == 1 {
		return declared == 0, declared, derived
	}
	return declared == derived, declared, derived
}

// checkProtocol tells whether a command is newer than this release. Such
// a command is neither applied nor refused, once authenticateNewer has
// found it signed: a newer command that fails the checks this release can
// make is refused like any other bad command.
func checkProtocol(body []byte) error {
	if kind, need := Needs(body); need > Protocol {
		return &NewerError{Kind: kind, Need: need}
	}
	return nil
}

// decodeNewer reads, leniently, what this release can check of a command
// newer than it: the id, time, signer and kind, and the one payload field
// a signer's role may depend on (passkey_change.user). It reads nothing
// else, so fields this release does not know, or knows in another shape,
// do not matter: the signature covers the whole body all the same.
func decodeNewer(body []byte) (*Command, error) {
	var h struct {
		ID            string    `json:"id"`
		Time          time.Time `json:"time"`
		Signer        string    `json:"signer"`
		Kind          string    `json:"kind"`
		PasskeyChange *struct {
			User string `json:"user"`
		} `json:"passkey_change"`
	}
	if err := json.Unmarshal(body, &h); err != nil {
		return nil, fmt.Errorf("policy: command of a newer protocol: %w", err)
	}
	c := &Command{ID: h.ID, Time: h.Time, Signer: h.Signer, Kind: h.Kind}
	if h.PasskeyChange != nil {
		c.PasskeyChange = &PasskeyChange{User: h.PasskeyChange.User}
	}
	return c, nil
}

// authenticateNewer is what lets a newer command stop the replica: the
// signature over its whole body (protocol stamp included) verifies with
// the key the current policy holds for its signer, and that signer may
// sign a command of its kind (authenticate; role admin for a kind this
// release does not know). Genesis and invite.redeem carry no
// signature over their body (an invite's proof covers only the node it
// admits), so nothing vouches for the protocol they claim: refused.
func (s *State) authenticateNewer(c *Command, env Envelope) error {
	switch c.Kind {
	case KindGenesis, KindRedeemInvite:
		return fmt.Errorf("%s carries no signature over its body, so its claim of a newer protocol cannot be verified", c.Kind)
	}
	return s.authenticate(c, env)
}
