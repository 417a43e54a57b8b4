package keys

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"
)

// Chain of custody. A store seals what it records with its node key
// (custody_sign.go), so every copy of its footage, wherever it is served
// from, shows which store made it and that nothing was made up, cut,
// swapped or reordered since:
//
//   - each epoch record is stored and replicated as a SealedEpoch: the
//     record and the store's signature over its SHA-256. Custodians answer
//     only for records a store of the camera's site sealed, so whoever
//     serves an export cannot mint a record of its own.
//   - each segment is stored and replicated as a SealedSegment: a signed
//     link (store, camera, epoch record hash, sequence number, start, end,
//     ciphertext size and SHA-256, hash of the camera's previous link)
//     followed by the ciphertext. The links of a camera form a hash chain
//     whose sequence numbers count every segment the store kept, so a
//     missing, repeated or reordered segment shows, and a segment cannot be
//     moved to another camera, epoch or time.
//
// Both encodings are canonical (one value, one byte string) and bounded.
// The ciphertext after a link is the unchanged OpenPGP message: strip the
// link (SealedSegment.Ciphertext) and any OpenPGP tool reads it.
//
//	sealed epoch:   "CSEE" 0x01 | u8 len | store | u32 len | record | [64] signature
//	sealed segment: "CSSG" 0x01 | link | [64] signature | ciphertext
//	link:           u8 len | store | u8 len | camera | i64 epoch start (s)
//	                | [32] epoch record SHA-256 | u64 sequence
//	                | i64 start (ns) | i64 end (ns) | u64 size
//	                | [32] ciphertext SHA-256 | [32] previous link hash
//
// The signatures are over a context string and the bytes above them (for
// an epoch, the store and the record's SHA-256), so a signature made for
// one kind of object is never valid for another.

var (
	sealedEpochMagic   = []byte("CSEE\x01")
	sealedSegmentMagic = []byte("CSSG\x01")
)

const (
	epochSealContext   = "custos/custody/epoch/v1\x00"
	segmentSealContext = "custos/custody/segment/v1\x00"
	// MaxSegmentCiphertext bounds a sealed segment's ciphertext.
	MaxSegmentCiphertext = 1 << 30
)

// SealedEpoch is an epoch record with the signature of the store that made
// it. Parsed from untrusted bytes it is only well-formed: Verify checks
// the signature against the store's key from the policy.
type SealedEpoch struct {
	Store       string
	Record      *EpochRecord
	RecordBytes []byte   // the record's canonical encoding
	RecordHash  [32]byte // SHA-256 of RecordBytes; segment links name it
	Signature   [64]byte
}

// SealEpochRecord encodes rec sealed by s.
func SealEpochRecord(s *CustodySigner, rec *EpochRecord) ([]byte, error) {
	rb, err := rec.Marshal()
	if err != nil {
		return nil, err
	}
	e := &SealedEpoch{Store: s.Name(), Record: rec, RecordBytes: rb, RecordHash: sha256.Sum256(rb)}
	if e.Signature, err = s.sign(e.signed()); err != nil {
		return nil, err
	}
	return e.encode(), nil
}

func (e *SealedEpoch) signed() []byte {
	b := append([]byte(epochSealContext), byte(len(e.Store)))
	b = append(b, e.Store...)
	return append(b, e.RecordHash[:]...)
}

// Bytes returns the sealed record's encoding.
func (e *SealedEpoch) Bytes() []byte { return e.encode() }

func (e *SealedEpoch) encode() []byte {
	b := append([]byte(nil), sealedEpochMagic...)
	b = append(b, byte(len(e.Store)))
	b = append(b, e.Store...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.RecordBytes)))
	b = append(b, e.RecordBytes...)
	return append(b, e.Signature[:]...)
}

// ParseSealedEpoch decodes an untrusted sealed epoch record and checks the
// record inside (UnmarshalEpochRecord). The result does not alias b.
func ParseSealedEpoch(b []byte) (*SealedEpoch, error) {
	if len(b) > MaxEpochRecordLen+256 {
		return nil, fmt.Errorf("keys: sealed epoch record: %d bytes: %w", len(b), ErrBadRecord)
	}
	d := &reader{b: b}
	if !bytes.Equal(d.next(len(sealedEpochMagic)), sealedEpochMagic) {
		return nil, fmt.Errorf("keys: not a sealed epoch record (no store signature): %w", ErrBadRecord)
	}
	e := &SealedEpoch{Store: string(d.next(int(d.u8())))}
	n := d.u32()
	if n > MaxEpochRecordLen {
		return nil, fmt.Errorf("keys: sealed epoch record: record of %d bytes: %w", n, ErrBadRecord)
	}
	e.RecordBytes = bytes.Clone(d.next(int(n)))
	copy(e.Signature[:], d.next(64))
	if d.short || len(d.b) != 0 {
		return nil, fmt.Errorf("keys: sealed epoch record: truncated or trailing bytes: %w", ErrBadRecord)
	}
	if err := validSignerName(e.Store); err != nil {
		return nil, fmt.Errorf("keys: sealed epoch record: %w: %w", err, ErrBadRecord)
	}
	rec, err := UnmarshalEpochRecord(e.RecordBytes)
	if err != nil {
		return nil, err
	}
	e.Record, e.RecordHash = rec, sha256.Sum256(e.RecordBytes)
	return e, nil
}

// Verify checks that the node with key pub, named e.Store in the policy,
// signed this record.
func (e *SealedEpoch) Verify(pub NodePublic) error {
	if err := verifyXEdDSA(pub, e.signed(), e.Signature); err != nil {
		return fmt.Errorf("keys: epoch record %s %s: not signed by store %s: %w",
			e.Record.Camera, e.Record.Start.Format(time.RFC3339), e.Store, err)
	}
	return nil
}

// SegmentLink is what a store signs about one stored segment.
type SegmentLink struct {
	Store      string
	Camera     string
	EpochStart time.Time // the epoch record's start, whole seconds
	EpochHash  [32]byte  // SHA-256 of the epoch record's canonical bytes
	Seq        uint64    // 0, 1, 2, … over the camera's stored segments
	Start, End time.Time // the footage's span, nanoseconds
	Size       int64     // ciphertext bytes
	SHA256     [32]byte  // of the ciphertext
	Prev       [32]byte  // Hash of the previous link; zero for the first
}

// Hash is what the next link names as Prev: SHA-256 of the link's
// encoding (not of its signature, which is randomized).
func (l *SegmentLink) Hash() [32]byte { return sha256.Sum256(l.encode()) }

func (l *SegmentLink) encode() []byte {
	b := make([]byte, 0, 2+len(l.Store)+len(l.Camera)+8+32+8*4+32+32)
	b = append(b, byte(len(l.Store)))
	b = append(b, l.Store...)
	b = append(b, byte(len(l.Camera)))
	b = append(b, l.Camera...)
	b = binary.BigEndian.AppendUint64(b, uint64(l.EpochStart.Unix()))
	b = append(b, l.EpochHash[:]...)
	b = binary.BigEndian.AppendUint64(b, l.Seq)
	b = binary.BigEndian.AppendUint64(b, uint64(l.Start.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(l.End.UnixNano()))
	b = binary.BigEndian.AppendUint64(b, uint64(l.Size))
	b = append(b, l.SHA256[:]...)
	return append(b, l.Prev[:]...)
}

func (l *SegmentLink) check() error {
	if err := validSignerName(l.Store); err != nil {
		return err
	}
	if err := validCamera(l.Camera); err != nil {
		return err
	}
	if l.EpochStart.Nanosecond() != 0 || l.EpochStart.Unix() <= 0 {
		return fmt.Errorf("epoch start %v is not a whole second after 1970", l.EpochStart)
	}
	if l.Start.UnixNano() <= 0 || !l.End.After(l.Start) {
		return fmt.Errorf("span %v to %v is empty or before 1970", l.Start, l.End)
	}
	if l.Start.Before(l.EpochStart) {
		return fmt.Errorf("segment starts at %v, before its epoch %v", l.Start, l.EpochStart)
	}
	if l.Size <= 0 || l.Size > MaxSegmentCiphertext {
		return fmt.Errorf("ciphertext of %d bytes", l.Size)
	}
	return nil
}

// SealedSegment is a segment's signed link and its ciphertext. Parsed from
// untrusted bytes it is well-formed and its ciphertext matches the link's
// size and SHA-256; Verify checks the signature.
type SealedSegment struct {
	Link       SegmentLink
	Signature  [64]byte
	Ciphertext []byte // aliases the parsed bytes
}

// SealSegment returns ciphertext sealed by s with link l. It fills in
// l's Store, Size and SHA256 from s and the ciphertext and returns the link
// as signed.
func SealSegment(s *CustodySigner, l SegmentLink, ciphertext []byte) ([]byte, SegmentLink, error) {
	l.Store, l.Size, l.SHA256 = s.Name(), int64(len(ciphertext)), sha256.Sum256(ciphertext)
	l.EpochStart, l.Start, l.End = l.EpochStart.UTC(), l.Start.UTC(), l.End.UTC()
	if err := l.check(); err != nil {
		return nil, l, fmt.Errorf("keys: seal segment: %w", err)
	}
	lb := l.encode()
	sig, err := s.sign(append([]byte(segmentSealContext), lb...))
	if err != nil {
		return nil, l, err
	}
	out := make([]byte, 0, len(sealedSegmentMagic)+len(lb)+64+len(ciphertext))
	out = append(out, sealedSegmentMagic...)
	out = append(out, lb...)
	out = append(out, sig[:]...)
	return append(out, ciphertext...), l, nil
}

// ParseSealedSegment decodes an untrusted sealed segment: the link's layout
// and bounds, and the ciphertext's size and SHA-256 against it.
func ParseSealedSegment(b []byte) (*SealedSegment, error) {
	d := &reader{b: b}
	if !bytes.Equal(d.next(len(sealedSegmentMagic)), sealedSegmentMagic) {
		return nil, fmt.Errorf("keys: not a sealed segment (no store signature): %w", ErrBadCustody)
	}
	g := &SealedSegment{}
	l := &g.Link
	l.Store = string(d.next(int(d.u8())))
	l.Camera = string(d.next(int(d.u8())))
	l.EpochStart = time.Unix(int64(d.u64()), 0).UTC()
	copy(l.EpochHash[:], d.next(32))
	l.Seq = d.u64()
	l.Start = time.Unix(0, int64(d.u64())).UTC()
	l.End = time.Unix(0, int64(d.u64())).UTC()
	l.Size = int64(d.u64())
	copy(l.SHA256[:], d.next(32))
	copy(l.Prev[:], d.next(32))
	copy(g.Signature[:], d.next(64))
	if d.short {
		return nil, fmt.Errorf("keys: sealed segment: truncated link: %w", ErrBadCustody)
	}
	if err := l.check(); err != nil {
		return nil, fmt.Errorf("keys: sealed segment: %w: %w", err, ErrBadCustody)
	}
	g.Ciphertext = d.b
	if int64(len(g.Ciphertext)) != l.Size || sha256.Sum256(g.Ciphertext) != l.SHA256 {
		return nil, fmt.Errorf("keys: sealed segment %s %s: ciphertext does not match its link: %w",
			l.Camera, l.Start.Format(time.RFC3339Nano), ErrBadCustody)
	}
	return g, nil
}

// Verify checks that the node with key pub (named g.Link.Store in the
// policy) signed this link.
func (g *SealedSegment) Verify(pub NodePublic) error {
	if err := verifyXEdDSA(pub, append([]byte(segmentSealContext), g.Link.encode()...), g.Signature); err != nil {
		return fmt.Errorf("keys: segment %s %s: not signed by store %s: %w",
			g.Link.Camera, g.Link.Start.Format(time.RFC3339Nano), g.Link.Store, err)
	}
	return nil
}
