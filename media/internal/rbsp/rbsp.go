// Package rbsp reads the raw byte sequence payload of H.264 and H.265
// parameter sets: emulation prevention bytes removed, then bits and
// Exp-Golomb codes. Past the end a Reader records an error and returns
// zeros, so a parser checks Err once at the end instead of at every read.
package rbsp

import "errors"

// ErrShort is the error of a read past the end.
var ErrShort = errors.New("ended early")

// Unescape removes emulation prevention bytes (00 00 03 → 00 00).
func Unescape(b []byte) []byte {
	out := make([]byte, 0, len(b))
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
		out = append(out, c)
	}
	return out
}

// Reader reads big-endian bits.
type Reader struct {
	b   []byte
	pos int // in bits
	err error
}

// NewReader reads b, already unescaped.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// Err is the first error met, or nil.
func (r *Reader) Err() error { return r.err }

// Bits reads n ≤ 32 bits.
func (r *Reader) Bits(n int) uint32 {
	var v uint32
	for range n {
		if r.pos >= 8*len(r.b) {
			r.err = ErrShort
			return 0
		}
		v = v<<1 | uint32(r.b[r.pos/8]>>(7-r.pos%8)&1)
		r.pos++
	}
	return v
}

// Flag reads one bit as a bool.
func (r *Reader) Flag() bool { return r.Bits(1) == 1 }

// Skip passes over n bits.
func (r *Reader) Skip(n int) {
	if n < 0 || r.pos+n > 8*len(r.b) {
		r.err, r.pos = ErrShort, 8*len(r.b)
		return
	}
	r.pos += n
}

// UE reads an unsigned Exp-Golomb code; more than 31 leading zeros is an
// error.
func (r *Reader) UE() uint32 {
	zeros := 0
	for r.Bits(1) == 0 {
		if r.err != nil {
			return 0
		}
		if zeros++; zeros > 31 {
			r.err = errors.New("Exp-Golomb code longer than 32 bits")
			return 0
		}
	}
	return (1<<zeros - 1) + r.Bits(zeros)
}

// SE reads a signed Exp-Golomb code.
func (r *Reader) SE() int32 {
	k := r.UE()
	if k&1 == 1 {
		return int32(k/2 + 1)
	}
	return -int32(k / 2)
}
