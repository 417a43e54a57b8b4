package media

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/ts"
	"golang.org/x/crypto/curve25519"
)

// needle is a byte string that must not be found on a disk.
type needle struct {
	what string
	b    []byte
}

// scan reads every regular file under dirs and returns, for each needle,
// the files it occurs in. It also returns how many files and bytes it
// read, so that a test can tell a clean scan from an empty one.
func scan(t *testing.T, needles []needle, dirs ...string) (found map[string][]string, files int, size int64) {
	t.Helper()
	found = map[string][]string{}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			files++
			size += int64(len(b))
			for _, n := range needles {
				if bytes.Contains(b, n.b) {
					found[n.what] = append(found[n.what], path)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return found, files, size
}

// videoNeedles are plaintext bytes of the recording: the clip's SPS and
// 64-byte windows of its first IDR slice and of a P slice (what a leak of
// the camera's stream would contain), and 64-byte windows of TS packet
// payload from the decrypted segments (what a leak of a segment's
// plaintext would contain; raw slice windows may straddle a TS packet
// header there).
func videoNeedles(t *testing.T, segs []decrypted) []needle {
	t.Helper()
	var out []needle
	var idr, pslice []byte
	for _, nal := range h264.SplitNALs(clip.H264) {
		switch h264.Type(nal) {
		case h264.NALSPS:
			if len(out) == 0 {
				out = append(out, needle{"SPS", nal})
			}
		case h264.NALIDR:
			if idr == nil {
				idr = nal
			}
		case h264.NALSlice:
			if pslice == nil && len(nal) > 512 {
				pslice = nal
			}
		}
	}
	if len(out) != 1 || len(idr) < 8192 || pslice == nil {
		t.Fatalf("clip: SPS %d, IDR of %d bytes, P slice %d bytes", len(out), len(idr), len(pslice))
	}
	for _, off := range []int{64, 1000, 4000, 8000} {
		out = append(out, needle{fmt.Sprintf("IDR window at %d", off), idr[off : off+64]})
	}
	out = append(out, needle{"P-slice window", pslice[100:164]})
	for i, s := range segs[:3] {
		picked := 0
		for p := s.plain; len(p) > 0 && picked < 3; p = p[ts.PacketSize:] {
			pid := int(p[1]&0x1f)<<8 | int(p[2])
			// Video, no PES start, payload only: 184 bytes of slice data.
			if pid == ts.PIDVideo && p[1]&0x40 == 0 && p[3]&0x30 == 0x10 {
				out = append(out, needle{fmt.Sprintf("TS payload window %d of segment %d", picked, i), slices.Clone(p[20:84])})
				picked++
			}
		}
	}
	return out
}

// TestNoPlaintextOnDisk (DESIGN invariant 1): after recording, no file
// anywhere under the test's directories (the store, and TMPDIR pointed
// there for the run) holds any plaintext video. The same scan finds every
// needle in plaintext written deliberately elsewhere, so a clean result
// means something.
func TestNoPlaintextOnDisk(t *testing.T) {
	root := t.TempDir()
	tmp := filepath.Join(root, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp) // any temporary file the recorder made would land here
	r := newRig(t, rigOpts{storeDir: filepath.Join(root, "store")})
	r.record(clip.Frames)
	segs := decryptDC(t, r.st)
	needles := videoNeedles(t, segs)
	r.st.Close() // the index is flushed

	found, files, size := scan(t, needles, root)
	if len(found) != 0 {
		t.Errorf("plaintext video on disk: %v", found)
	}
	if files < len(segs)+2 || size < int64(len(clip.H264)) {
		t.Fatalf("scanned only %d files, %d bytes: the store is not where the test looked", files, size)
	}

	control := t.TempDir()
	var plain []byte
	for _, s := range segs {
		plain = append(plain, s.plain...)
	}
	if err := os.WriteFile(filepath.Join(control, "plain.ts"), plain, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(control, "clip.h264"), clip.H264, 0o600); err != nil {
		t.Fatal(err)
	}
	found, _, _ = scan(t, needles, control)
	for _, n := range needles {
		if len(found[n.what]) == 0 {
			t.Errorf("the scan misses the %s in deliberately written plaintext", n.what)
		}
	}
}

// TestNoKeyOnDisk (DESIGN invariant 2): the private key of every stored
// epoch, rebuilt here from custodian shares, and each custodian's
// decrypted share appear in no file under the store or TMPDIR.
func TestNoKeyOnDisk(t *testing.T) {
	root := t.TempDir()
	tmp := filepath.Join(root, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TMPDIR", tmp)
	r := newRig(t, rigOpts{storeDir: filepath.Join(root, "store"),
		config: func(c *RecorderConfig) { c.EpochLength = 2 * time.Second }}) // several epochs
	r.record(4 * clip.GOP)
	eps, err := r.st.Epochs(testCamera, allFrom, allTo)
	if err != nil || len(eps) < 2 {
		t.Fatalf("epochs stored: %d, %v; want at least 2", len(eps), err)
	}
	dcA, dcB, recovery := testKeys(t)
	var needles []needle
	for _, e := range eps {
		rec := storedRecord(t, r.st, e.Start)
		var shares []keys.Share
		for _, k := range []*keys.CustodianKey{dcA, dcB, recovery} {
			sh, err := k.OpenShare(rec)
			if err != nil {
				t.Fatal(err)
			}
			shares = append(shares, sh)
			needles = append(needles, needle{k.Name() + "'s share of " + e.Start.String(), sh.Y})
		}
		// No code rebuilds the epoch key; the test does, from two shares, to
		// look for the X25519 secret itself on the disk as well.
		for _, k := range epochSecrets(t, rec, shares[0], shares[2]) {
			reversed := slices.Clone(k)
			slices.Reverse(reversed)
			needles = append(needles, needle{"key of " + e.Start.String(), k}, needle{"key (reversed) of " + e.Start.String(), reversed})
		}
	}
	r.st.Close()

	found, files, _ := scan(t, needles, root)
	if len(found) != 0 {
		t.Errorf("epoch key material on disk: %v", found)
	}
	if files < 4 {
		t.Fatalf("scanned only %d files", files)
	}
	control := t.TempDir()
	if err := os.WriteFile(filepath.Join(control, "leak"), needles[len(needles)-2].b, 0o600); err != nil {
		t.Fatal(err)
	}
	if found, _, _ := scan(t, needles, control); len(found) == 0 {
		t.Error("the scan misses a key written deliberately")
	}
}

// epochSecrets rebuilds, from two Shamir shares of an epoch key's scalar mod
// L, the X25519 secret the store drew: k mod L is shared, and the secret is
// the clamped k = (k mod L) + j·L whose public key is the record's.
func epochSecrets(t *testing.T, rec *keys.EpochRecord, a, b keys.Share) [][]byte {
	t.Helper()
	l, _ := new(big.Int).SetString("7237005577332262213973186563042994240857116359379907606001950938285454250989", 10)
	le := func(b []byte) *big.Int { r := slices.Clone(b); slices.Reverse(r); return new(big.Int).SetBytes(r) }
	xa, xb := big.NewInt(int64(a.X)), big.NewInt(int64(b.X))
	// Lagrange at 0: k = ya·xb/(xb−xa) + yb·xa/(xa−xb) mod L.
	term := func(y, xo, d *big.Int) *big.Int {
		inv := new(big.Int).ModInverse(new(big.Int).Mod(d, l), l)
		return new(big.Int).Mul(new(big.Int).Mul(y, xo), inv)
	}
	k := new(big.Int).Add(term(le(a.Y), xb, new(big.Int).Sub(xb, xa)), term(le(b.Y), xa, new(big.Int).Sub(xa, xb)))
	k.Mod(k, l)
	var out [][]byte
	for j := int64(0); j < 16; j++ {
		c := new(big.Int).Add(k, new(big.Int).Mul(l, big.NewInt(j)))
		if c.BitLen() != 255 || c.Bit(0)|c.Bit(1)|c.Bit(2) != 0 {
			continue
		}
		be := c.FillBytes(make([]byte, 32))
		slices.Reverse(be)
		if pub, err := curve25519.X25519(be, curve25519.Basepoint); err == nil && bytes.Contains(rec.PublicKey, pub) {
			out = append(out, be)
		}
	}
	if len(out) != 1 {
		t.Fatalf("two shares rebuild %d X25519 secrets of the record's public key, want 1", len(out))
	}
	return out
}
