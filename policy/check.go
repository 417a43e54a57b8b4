package policy

// The checks the planners share: well-formed users, nodes, keys,
// jurisdictions and camera sources.

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

func (s *State) activeAdmins() int {
	n := 0
	for _, u := range s.Users {
		if u.Role == UserAdmin && !u.Revoked {
			n++
		}
	}
	return n
}

func (s *State) checkUser(u *User) error {
	if err := validName(u.Name); err != nil {
		return fmt.Errorf("user: %w", err)
	}
	if s.Users[u.Name] != nil {
		return fmt.Errorf("user %q exists (revoked users keep their name)", u.Name)
	}
	switch u.Role {
	case UserAdmin, UserApprover, UserAuditor, UserHelpdesk, UserViewer:
	default:
		return fmt.Errorf("user role %q: want admin, approver, auditor, helpdesk or viewer", u.Role)
	}
	if len(u.Passkeys) > 0 {
		return fmt.Errorf("user %q: a user is added without passkeys; enrol them with %s", u.Name, KindAddPasskey)
	}
	fp, err := publicKeyFingerprint(u.PublicKey)
	if err != nil {
		return fmt.Errorf("user %q: %w", u.Name, err)
	}
	if fp != u.Fingerprint {
		return fmt.Errorf("user %q: fingerprint does not match the key", u.Name)
	}
	for _, o := range s.Users {
		if o.Fingerprint == fp {
			return fmt.Errorf("user %q: key already belongs to %q", u.Name, o.Name)
		}
	}
	return nil
}

func (s *State) checkNode(n *Node) error {
	if err := validNodeKey(n.PublicKey); err != nil {
		return fmt.Errorf("node %q: %w", n.Name, err)
	}
	for _, o := range s.Nodes {
		if o.PublicKey == n.PublicKey {
			return fmt.Errorf("node %q: key already belongs to %q", n.Name, o.Name)
		}
	}
	return s.checkNodeWithoutKey(n)
}

// checkNodeWithoutKey checks everything about a node but its key (an
// invite's node has none yet).
func (s *State) checkNodeWithoutKey(n *Node) error {
	if err := validName(n.Name); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	if s.Nodes[n.Name] != nil {
		return fmt.Errorf("node %q exists (revoked nodes keep their name)", n.Name)
	}
	switch n.Role {
	case RoleDatacenter, RoleWitness, RoleAdminNode:
	case RoleStore:
		if s.Sites[n.Site] == nil {
			return fmt.Errorf("store %q: no site %q", n.Name, n.Site)
		}
	case RoleInstaller:
		if s.Sites[n.Site] == nil {
			return fmt.Errorf("installer %q: no site %q", n.Name, n.Site)
		}
		if n.Window.Until.IsZero() {
			return fmt.Errorf("installer %q needs a window end: installers are members only while they install", n.Name)
		}
	default:
		return fmt.Errorf("node role %q: want datacenter, witness, store, admin or installer", n.Role)
	}
	if n.Jurisdiction == "" {
		return fmt.Errorf("node %q needs a jurisdiction (e.g. EU)", n.Name)
	}
	if n.Custodian != nil {
		if n.Role != RoleDatacenter {
			return fmt.Errorf("node %q: only datacenters hold custodian keys", n.Name)
		}
		if err := checkCustodianKey(n.Custodian); err != nil {
			return fmt.Errorf("node %q: custodian key: %w", n.Name, err)
		}
	}
	if !n.Window.Until.IsZero() && !n.Window.Until.After(n.Window.From) {
		return fmt.Errorf("node %q: window ends before it starts", n.Name)
	}
	return nil
}

// validNodeKey checks "nodekey:<64 lower-case hex>" without importing keys.
// Only the canonical form is accepted, so that one key has one spelling and
// the duplicate check (a string compare) cannot be fooled by case.
func validNodeKey(k string) error {
	h, ok := bytes.CutPrefix([]byte(k), []byte("nodekey:"))
	if !ok || len(h) != 64 {
		return errors.New("public key must be nodekey:<64 hex digits>")
	}
	var raw [32]byte
	if _, err := hex.Decode(raw[:], h); err != nil || raw == [32]byte{} || hex.EncodeToString(raw[:]) != string(h) {
		return errors.New("public key must be nodekey:<64 lower-case hex digits>, not all zero")
	}
	return nil
}

// inviteJurisdiction is the jurisdiction of the node inv creates.
func (s *State) inviteJurisdiction(inv *Invite) string {
	if inv.Site == "" && inv.Jurisdiction != "" {
		return inv.Jurisdiction
	}
	return s.jurisdictionFor(inv.Site)
}

func validJurisdiction(j string) bool {
	if len(j) < 2 || len(j) > 8 {
		return false
	}
	for i := range len(j) {
		if j[i] < 'A' || j[i] > 'Z' {
			return false
		}
	}
	return true
}

func (s *State) jurisdictionFor(site string) string {
	if st := s.Sites[site]; st != nil {
		return st.Jurisdiction
	}
	return "EU"
}

// validSource checks a camera's source URL: rtsp://host[:port]/path,
// rtsps://… (protocol 2, see sourceProtocol) or synthetic:[?query], and
// never credentials, which would be replicated to
// every node and kept in every log.
func validSource(src string) error {
	if src == "" {
		return nil
	}
	if len(src) > 1024 {
		return errors.New("source URL longer than 1024 bytes")
	}
	u, err := url.Parse(src)
	if err != nil {
		return errors.New("source is not a URL (want rtsp://HOST[:PORT]/PATH or synthetic:)")
	}
	if u.User != nil {
		return errors.New("the source URL carries credentials; they never enter the policy: add the camera through its store's --dir, which keeps them there")
	}
	switch u.Scheme {
	case "rtsp", "rtsps":
		if u.Host == "" {
			return fmt.Errorf("%s source without a host", u.Scheme)
		}
	case "synthetic":
		if err := validSynthetic(u); err != nil {
			return err
		}
	default:
		return fmt.Errorf("source scheme %q: want rtsp, rtsps or synthetic", u.Scheme)
	}
	if strings.ContainsAny(src, "\x00\r\n") {
		return errors.New("source URL has control characters")
	}
	return nil
}

// validSynthetic checks a synthetic camera's parameters as the store's
// source reads them (media/source), within what a camera in the policy may
// ask of a store: fps 1..120, scale 1..16, pace=real, codec h264 or h265.
// A camera the store cannot open would never appear; pace=none (a
// benchmark mode) would flood it. The codec parameter came in protocol 2
// (sourceProtocol).
func validSynthetic(u *url.URL) error {
	if u.Opaque != "" || u.Host != "" || u.Path != "" || u.Fragment != "" {
		return errors.New("a synthetic source takes only query parameters, e.g. synthetic:?fps=25")
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return errors.New("the synthetic source's query does not parse")
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return fmt.Errorf("synthetic parameter %q given %d times", k, len(vs))
		}
		v := vs[0]
		switch k {
		case "fps":
			if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 120 {
				return fmt.Errorf("synthetic fps=%q: want an integer from 1 to 120", v)
			}
		case "scale":
			if n, err := strconv.Atoi(v); err != nil || n < 1 || n > 16 {
				return fmt.Errorf("synthetic scale=%q: want an integer from 1 to 16", v)
			}
		case "pace":
			if v != "real" {
				return fmt.Errorf("synthetic pace=%q: a camera is paced in real time (pace=none is for benchmarks only)", v)
			}
		case "codec":
			if v != "h264" && v != "h265" {
				return fmt.Errorf("synthetic codec=%q: want h264 or h265", v)
			}
		default:
			return fmt.Errorf("unknown synthetic parameter %q; known: codec, fps, pace, scale", k)
		}
	}
	return nil
}
