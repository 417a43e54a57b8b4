// Package custody is the chain of custody's policy side: which node key a
// store's seal (keys/custody.go) must verify under, and the checks of a
// sealed epoch record and a sealed segment against the policy. It decides
// nothing else: callers choose what to do with footage that fails (refuse,
// alarm, skip), and it never reads or writes media.
//
// A camera's footage is sealed by a store of the camera's site
// (keys/custody.go). The key is the one the policy holds for that store,
// revoked or not: nodes keep their name and key after revocation, so a
// revoked store's old footage stays verifiable, while a store's seal on
// another site's camera never is.
package custody

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/policy"
)

// ErrBroken marks footage whose seal does not verify.
var ErrBroken = errors.New("chain of custody broken")

// Key returns the node key of signer, which must be a store of
// camera's site in st.
func Key(st *policy.State, signer, camera string) (keys.NodePublic, error) {
	site, _, ok := strings.Cut(camera, "/")
	if !ok {
		return keys.NodePublic{}, fmt.Errorf("camera %q has no site: %w", camera, ErrBroken)
	}
	n := st.Nodes[signer]
	if n == nil || n.Role != policy.RoleStore || n.Site != site {
		return keys.NodePublic{}, fmt.Errorf("%s is sealed by %q, which is not a store of site %s in the policy: %w",
			camera, signer, site, ErrBroken)
	}
	pub, err := keys.ParseNodePublic(n.PublicKey)
	if err != nil {
		return keys.NodePublic{}, fmt.Errorf("store %s: %w", signer, err)
	}
	return pub, nil
}

// VerifyEpoch parses a sealed epoch record and checks its seal against
// the policy; the record must be camera's.
func VerifyEpoch(st *policy.State, camera string, b []byte) (*keys.SealedEpoch, error) {
	e, err := keys.ParseSealedEpoch(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrBroken)
	}
	if e.Record.Camera != camera {
		return nil, fmt.Errorf("epoch record of camera %s where %s's belongs: %w", e.Record.Camera, camera, ErrBroken)
	}
	pub, err := Key(st, e.Store, camera)
	if err != nil {
		return nil, err
	}
	if err := e.Verify(pub); err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrBroken)
	}
	return e, nil
}

// VerifySegment parses a sealed segment and checks its link against
// the policy; the link must be camera's and, when ep is given, name ep's
// record and store.
func VerifySegment(st *policy.State, camera string, b []byte, ep *keys.SealedEpoch) (*keys.SealedSegment, error) {
	g, err := keys.ParseSealedSegment(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrBroken)
	}
	l := &g.Link
	if l.Camera != camera {
		return nil, fmt.Errorf("segment of camera %s where %s's belongs: %w", l.Camera, camera, ErrBroken)
	}
	pub, err := Key(st, l.Store, camera)
	if err != nil {
		return nil, err
	}
	if err := g.Verify(pub); err != nil {
		return nil, fmt.Errorf("%w: %w", err, ErrBroken)
	}
	if ep != nil && (l.EpochHash != ep.RecordHash || !l.EpochStart.Equal(ep.Record.Start) || l.Store != ep.Store) {
		return nil, fmt.Errorf("segment %s %s names another epoch record than the one it is opened with: %w",
			camera, stamp(l.Start), ErrBroken)
	}
	return g, nil
}

// stamp formats t as the node's messages do.
func stamp(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }
