package media

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/h264"
	"github.com/custos-cctv/custos/media/ts"
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
		// Combine gives the secret Shamir split: the epoch's X25519 scalar.
		secret, err := keys.Combine(shares[:2])
		if err != nil {
			t.Fatal(err)
		}
		if again, err := keys.Combine(shares[1:]); err != nil || !bytes.Equal(again, secret) || len(secret) != 32 {
			t.Fatalf("shares of %s rebuild different secrets (%d bytes, %v)", e.Start, len(secret), err)
		}
		key, err := keys.CombineEpochKey(rec, shares[0], shares[2])
		if err != nil {
			t.Fatalf("the shares do not rebuild %s's key: %v", e.Start, err)
		}
		key.Zero()
		reversed := slices.Clone(secret)
		slices.Reverse(reversed)
		needles = append(needles, needle{"key of " + e.Start.String(), secret}, needle{"key (reversed) of " + e.Start.String(), reversed})
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
