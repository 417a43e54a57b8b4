package keys

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Erasure receipts. A node that carried out an approved erasure on the
// footage it holds (a store its recordings, a datacenter its replicas)
// says so in a receipt signed with its node key, like a store's seal
// (custody_sign.go). Whoever collects the receipts to show that an
// erasure reached every copy checks each against that node's key in the
// policy: a requester, a relay or another node cannot report a node's
// erasure done for it.
//
//	receipt: "CSER" 0x01 | u32 len | body (JSON) | [64] signature
//
// The signature is over a context string and the SHA-256 of the body, so
// it is valid for nothing but an erasure receipt.

var erasureMagic = []byte("CSER\x01")

const (
	erasureContext = "custos/erasure/receipt/v1\x00"
	// MaxErasureReceipt bounds a receipt's body.
	MaxErasureReceipt = 64 << 10
)

// Receipt states.
const (
	ErasureDone   = "done"   // every copy of the range this node held is gone
	ErasureFailed = "failed" // the node tried and failed; Error says why (it retries)
)

// ErasureReceipt is what one node reports of one erasure request.
type ErasureReceipt struct {
	Federation string         `json:"federation"`
	Request    string         `json:"request"`
	Node       string         `json:"node"`
	State      string         `json:"state"`
	Time       time.Time      `json:"time"`
	Cameras    []ErasedCamera `json:"cameras"`
	Error      string         `json:"error,omitempty"`
}

// ErasedCamera is what the node removed of one camera's footage.
type ErasedCamera struct {
	Camera   string    `json:"camera"`
	From     time.Time `json:"from"` // the range erased, [From, To)
	To       time.Time `json:"to"`
	Segments int       `json:"segments"`
	Bytes    int64     `json:"bytes"`
	Epochs   int       `json:"epochs"` // epoch records (and the key shares in them) destroyed
	Held     int       `json:"held,omitempty"`
	// Digest is the hex SHA-256 over the SHA-256 of every segment removed,
	// in order of start: the node's audit lines list those hashes.
	Digest string `json:"digest"`
}

// SealErasureReceipt encodes r signed by s; r.Node must be s's name.
func SealErasureReceipt(s *CustodySigner, r *ErasureReceipt) ([]byte, error) {
	if r.Node != s.Name() {
		return nil, fmt.Errorf("keys: erasure receipt of node %q signed as %q", r.Node, s.Name())
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	if len(body) > MaxErasureReceipt {
		return nil, fmt.Errorf("keys: erasure receipt of %d bytes; at most %d", len(body), MaxErasureReceipt)
	}
	sig, err := s.sign(erasureSigned(body))
	if err != nil {
		return nil, err
	}
	b := append([]byte(nil), erasureMagic...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(body)))
	b = append(b, body...)
	return append(b, sig[:]...), nil
}

func erasureSigned(body []byte) []byte {
	h := sha256.Sum256(body)
	return append([]byte(erasureContext), h[:]...)
}

// OpenErasureReceipt checks that b is a receipt signed by the node whose
// key is pub and returns it. Checking that the receipt names the node,
// federation and request the caller expects is the caller's job.
func OpenErasureReceipt(b []byte, pub NodePublic) (*ErasureReceipt, error) {
	rest, ok := bytes.CutPrefix(b, erasureMagic)
	if !ok || len(rest) < 4+64 {
		return nil, errors.New("keys: not an erasure receipt")
	}
	n := binary.BigEndian.Uint32(rest)
	if n > MaxErasureReceipt || uint64(len(rest)) != 4+uint64(n)+64 {
		return nil, errors.New("keys: erasure receipt: length does not match")
	}
	body := rest[4 : 4+n]
	var sig [64]byte
	copy(sig[:], rest[4+n:])
	if err := verifyXEdDSA(pub, erasureSigned(body), sig); err != nil {
		return nil, fmt.Errorf("keys: erasure receipt: %w", err)
	}
	var r ErasureReceipt
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("keys: erasure receipt: %w", err)
	}
	if err := r.check(); err != nil {
		return nil, err
	}
	return &r, nil
}

func (r *ErasureReceipt) check() error {
	switch {
	case r.Federation == "" || r.Request == "" || r.Node == "":
		return errors.New("keys: erasure receipt without federation, request or node")
	case r.State != ErasureDone && r.State != ErasureFailed:
		return fmt.Errorf("keys: erasure receipt state %q; want done or failed", r.State)
	case r.State == ErasureFailed && r.Error == "":
		return errors.New("keys: a failed erasure receipt says why")
	case !slices.IsSortedFunc(r.Cameras, func(a, b ErasedCamera) int { return strings.Compare(a.Camera, b.Camera) }):
		return errors.New("keys: erasure receipt cameras not sorted")
	}
	return nil
}

// SegmentsDigest is ErasedCamera.Digest of the SHA-256s of the segments
// removed, in order of start.
func SegmentsDigest(sums [][32]byte) string {
	h := sha256.New()
	for _, s := range sums {
		h.Write(s[:])
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
