package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/keys"
	"github.com/custos-cctv/custos/media/clip"
	"github.com/custos-cctv/custos/media/redact"
)

// needFFmpeg skips a test without ffmpeg and ffprobe (CI installs them).
func needFFmpeg(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"ffmpeg", "ffprobe"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed (apt-get install ffmpeg)", tool)
		}
	}
}

// fixtureTS is the fixture clip (640x360, 25 fps) as MPEG-TS remuxed
// without re-encoding, as an export is; frames > 0 keeps only the first
// frames.
func fixtureTS(t *testing.T, frames int) []byte {
	t.Helper()
	dir := t.TempDir()
	raw, ts := filepath.Join(dir, "clip.h264"), filepath.Join(dir, "clip.ts")
	if err := os.WriteFile(raw, clip.H264, 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"-nostdin", "-v", "error", "-f", "h264", "-framerate", "25", "-i", raw, "-c", "copy"}
	if frames > 0 {
		args = append(args, "-frames:v", strconv.Itoa(frames))
	}
	if out, err := exec.Command("ffmpeg", append(args, "-f", "mpegts", ts)...).CombinedOutput(); err != nil {
		t.Fatalf("making the fixture TS: %v: %s", err, out)
	}
	b, err := os.ReadFile(ts)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func hexSHA(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// writeSignedExport writes data to file with its manifest signed by k as
// export writes them (exporter alice of federation acme), and returns the
// manifest body.
func writeSignedExport(t *testing.T, file string, data []byte, frames int, k *keys.AdminKey) []byte {
	t.Helper()
	h := hexSHA(data)
	from := time.Now().Add(-time.Hour).Truncate(time.Second)
	m := &keys.Manifest{Version: keys.ManifestVersion, Federation: "acme", RequestID: "r1", Requester: "alice", Approvers: []string{"bob", "carol"},
		Purpose: "subject access request", Basis: "art. 15", Cameras: []string{"praha-1/door"}, From: from, To: from.Add(10 * time.Second),
		Exporter: "alice", ExporterNode: "dc-a", Created: time.Now(),
		Segments: []keys.ManifestSegment{{Camera: "praha-1/door", Start: from, End: from.Add(10 * time.Second), CiphertextSHA256: h, PlaintextSHA256: h, Store: "store-1", Link: h}},
		Output:   keys.ManifestOutput{Name: filepath.Base(file), Bytes: int64(len(data)), SHA256: h, Frames: frames}}
	body, sig, err := keys.SignManifest(k, m)
	if err != nil {
		t.Fatal(err)
	}
	bp, sp := manifestPaths(file)
	for p, b := range map[string][]byte{file: data, bp: body, sp: sig, manifestKeyPath(file): k.ArmoredPublicKey()} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return body
}

// grayFrame decodes frame n of a TS file to 8-bit grey.
func grayFrame(t *testing.T, path string, n int) []byte {
	t.Helper()
	out, err := exec.Command("ffmpeg", "-nostdin", "-v", "error", "-f", "mpegts", "-i", path,
		"-vf", "select='eq(n,"+strconv.Itoa(n)+")'", "-fps_mode", "passthrough", "-frames:v", "1",
		"-pix_fmt", "gray", "-f", "rawvideo", "pipe:1").Output()
	if err != nil || len(out) != clip.Width*clip.Height {
		t.Fatalf("decoding frame %d of %s: %d bytes, %v", n, path, len(out), err)
	}
	return out
}

// meanDiff is the mean absolute difference of a and b inside (or, with
// inside false, outside) the rectangle x0,y0–x1,y1, leaving out m pixels
// on each side of its border (encoder blocks straddle it).
func meanDiff(a, b []byte, x0, y0, x1, y1, m int, inside bool) float64 {
	var sum, n float64
	for y := range clip.Height {
		for x := range clip.Width {
			in := x >= x0+m && x < x1-m && y >= y0+m && y < y1-m
			out := x < x0-m || x >= x1+m || y < y0-m || y >= y1+m
			if (inside && in) || (!inside && out) {
				i := y*clip.Width + x
				sum += float64(max(a[i], b[i]) - min(a[i], b[i]))
				n++
			}
		}
	}
	return sum / n
}

// TestCLIRedact: redact makes a new file from a signed export, leaves the
// export as it was, and signs a redaction manifest that records the boxes
// and both files' hashes; verify-export checks it and the export beside
// it, and refuses a changed redacted file, manifest or source, or a
// source that is another export. Bad boxes are usage errors that leave
// nothing behind.
func TestCLIRedact(t *testing.T) {
	needFFmpeg(t)
	tmp := t.TempDir()
	setPass(t, "a long enough passphrase")
	alice, bob := filepath.Join(tmp, "alice.key"), filepath.Join(tmp, "bob.key")
	for _, k := range []string{alice, bob} {
		if code, _, errOut := runCLI("admin", "keygen", "--out", k, "--name", strings.TrimSuffix(filepath.Base(k), ".key")); code != 0 {
			t.Fatalf("keygen: %s", errOut)
		}
	}
	ak, err := keys.LoadAdminKey(alice, []byte(testPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	defer ak.Close()
	src := filepath.Join(tmp, "x.ts")
	data := fixtureTS(t, 0)
	writeSignedExport(t, src, data, clip.Frames, ak)
	red := filepath.Join(tmp, "x.red.ts")
	cli := func(code int, want string, args ...string) string {
		t.Helper()
		c, out, errOut := runCLI(args...)
		if c != code || !strings.Contains(out+errOut, want) {
			t.Fatalf("custos %q: exit %d %s%s; want exit %d mentioning %q", args, c, out, errOut, code, want)
		}
		return out
	}

	for _, c := range []struct {
		code int
		want string
		args []string
	}{
		{2, "give --redact or --keep, not both", []string{"--redact", "0,0,32,32", "--keep", "64,64,32,32"}},
		{2, "--redact or --keep is required", nil},
		{2, "box 1 (0,0,0,32) has no area", []string{"--redact", "0,0,0,32"}},
		{2, "box 2 (10,10,32,32@5s-2s) ends before it starts", []string{"--redact", "0,0,32,32", "--redact", "10,10,32,32@5-2"}},
		{2, "starts left of or above the frame", []string{"--redact", "-4,0,32,32"}},
		{2, "smaller than 16x16 pixels", []string{"--keep", "0,0,8,32"}},
		{2, `box "1,2,3": want x,y,w,h[@from-to]`, []string{"--redact", "1,2,3"}},
		{2, "pixelation blocks are at least 16 px", []string{"--redact", "0,0,32,32", "--block", "8"}},
		{2, "--out is the export itself", []string{"--redact", "0,0,32,32", "--out", src}},
		{2, "has the export's name", []string{"--redact", "0,0,32,32", "--out", filepath.Join(t.TempDir(), "x.ts")}},
		// Against the export's own frame and length.
		{2, "extends past the 640x360 frame", []string{"--redact", "600,0,100,100"}},
		{2, "starts after the", []string{"--redact", "0,0,32,32@20-"}},
		// Only the key that signed the export signs its redaction.
		{4, "only the key that signed an export signs a redaction of it", []string{"--redact", "0,0,32,32", "--as", bob}},
	} {
		args := append([]string{"redact", src}, c.args...)
		if !strings.Contains(strings.Join(c.args, " "), "--out") {
			args = append(args, "--out", red)
		}
		if !strings.Contains(strings.Join(c.args, " "), "--as") {
			args = append(args, "--as", alice)
		}
		cli(c.code, c.want, args...)
		if _, err := os.Lstat(red); !os.IsNotExist(err) {
			t.Fatalf("custos %q left %s", args, red)
		}
	}
	cli(2, "--out and --as are required", "redact", src, "--redact", "0,0,32,32", "--as", alice)
	cli(2, "which export?", "redact", "--redact", "0,0,32,32", "--out", red, "--as", alice)

	// Box 1 for seconds 1 to 5 only; box 2 for the whole clip.
	out := cli(0, "redacted x.ts: "+red+", 250 frames", "redact", src, "--redact", "101,50,128,97@1-5", "--redact", "400,200,160,120", "--out", red, "--as", alice)
	if !strings.Contains(out, "2 boxes made unrecognisable; pixelation blocks of 16 px, then a blur of 8 px") ||
		!strings.Contains(out, "box 1: 101,50 128x97 from 1s to 5s (applied as 100,50 130x98: edges on even pixels)") ||
		!strings.Contains(out, "box 2: 400,200 160x120 from 0s to the end\n") || !strings.Contains(out, "signed by alice ("+ak.Fingerprint()+")") ||
		!strings.Contains(out, "verified "+src+", the export of request r1") {
		t.Fatalf("redact printed:\n%s", out)
	}
	if got, _ := os.ReadFile(src); !bytes.Equal(got, data) {
		t.Fatal("redact changed the export")
	}
	redData, err := os.ReadFile(red)
	if err != nil {
		t.Fatal(err)
	}
	bp, sp, pp := redactionPaths(red)
	body, _ := os.ReadFile(bp)
	mbody, _ := os.ReadFile(src + ".manifest.json")
	r, err := keys.ParseRedaction(body)
	if err != nil {
		t.Fatal(err)
	}
	if r.Source.SHA256 != hexSHA(data) || r.Source.ManifestSHA256 != hexSHA(mbody) || r.Source.Name != "x.ts" || r.Output.SHA256 != hexSHA(redData) ||
		r.Output.Bytes != int64(len(redData)) || r.Output.Frames != clip.Frames || r.Mode != "redact" || r.Redactor != "alice" || r.RequestID != "r1" ||
		len(r.Boxes) != 2 || r.Boxes[0] != (keys.RedactionBox{X: 101, Y: 50, W: 128, H: 97, From: "1s", To: "5s"}) ||
		r.Boxes[1] != (keys.RedactionBox{X: 400, Y: 200, W: 160, H: 120, From: "0s"}) || !strings.HasPrefix(r.Tool, "ffmpeg version ") {
		t.Fatalf("redaction manifest:\n%s", body)
	}
	// The pixels: box 1 is redacted at 2 s (frame 50) and not at 6 s
	// (frame 150); box 2 at both; the rest of the frame is as it was.
	for _, f := range []struct {
		n          int
		box1Hidden bool
	}{{50, true}, {150, false}} {
		a, b := grayFrame(t, src, f.n), grayFrame(t, red, f.n)
		box1 := meanDiff(a, b, 100, 50, 230, 148, 8, true)
		box2 := meanDiff(a, b, 400, 200, 560, 320, 8, true)
		t.Logf("frame %d: mean difference inside box 1 %.1f, box 2 %.1f", f.n, box1, box2)
		if box2 < 2 || (f.box1Hidden && box1 < 2) || (!f.box1Hidden && box1 > 2) {
			t.Errorf("frame %d: mean difference inside box 1 %.1f, box 2 %.1f", f.n, box1, box2)
		}
	}

	out = cli(0, "INTACT: "+red+" is a redacted copy of x.ts, the export of request r1: 2 boxes made unrecognisable", "verify-export", red)
	for _, want := range []string{"signature: the redaction manifest is signed by key " + ak.Fingerprint() + ", the key in " + pp + ", which came with the redacted file",
		"file: " + red + " has the " + strconv.Itoa(len(redData)) + " bytes", "source: " + src + " is the export of request r1, verified",
		"not checked: whose key " + ak.Fingerprint() + " is"} {
		if !strings.Contains(out, want) {
			t.Errorf("verify-export lacks %q:\n%s", want, out)
		}
	}
	cli(0, "OK: ", "verify-export", red, "--key", alice+".pub")
	cli(1, "redaction manifest signature does not verify", "verify-export", red, "--key", bob+".pub")

	// Tampering, one thing at a time, each put back after.
	tamper := func(path string, edit func([]byte) []byte, code int, want string) {
		t.Helper()
		orig, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, edit(bytes.Clone(orig)), 0o600); err != nil {
			t.Fatal(err)
		}
		cli(code, want, "verify-export", red)
		if err := os.WriteFile(path, orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	flip := func(b []byte) []byte { b[len(b)/2] ^= 1; return b }
	tamper(red, flip, 1, "redacted file does not match its manifest")
	tamper(bp, func(b []byte) []byte { return bytes.Replace(b, []byte(`"x": 101`), []byte(`"x": 111`), 1) }, 1, "redaction manifest signature does not verify")
	tamper(bp, func(b []byte) []byte {
		return bytes.Replace(b, []byte(r.Output.SHA256), []byte(hexSHA([]byte("x"))), 1)
	}, 1, "redaction manifest signature does not verify")
	tamper(sp, flip, 1, "signature does not verify")
	tamper(src, flip, 1, "the source export "+src+": ")
	// Another export signed by the same key under the source's name is
	// not the one the redaction was made from.
	other := fixtureTS(t, 100)
	tamperSource := func() {
		t.Helper()
		saved := map[string][]byte{}
		for _, p := range []string{src, src + ".manifest.json", src + ".manifest.sig"} {
			saved[p], _ = os.ReadFile(p)
		}
		writeSignedExport(t, src, other, 100, ak)
		cli(0, "INTACT: ", "verify-export", src) // a good export in itself
		cli(1, "export is not the redaction's source", "verify-export", red)
		for p, b := range saved {
			os.WriteFile(p, b, 0o600)
		}
	}
	tamperSource()
	cli(0, "source: ", "verify-export", red)

	// Without the source beside it, what was checked and what was not.
	moved := filepath.Join(t.TempDir(), "x.ts")
	if err := os.Rename(src, moved); err != nil {
		t.Fatal(err)
	}
	out = cli(0, "INTACT: ", "verify-export", red)
	if !strings.Contains(out, "not checked: the source export: x.ts is not beside x.red.ts, so it was not verified (the redaction records its SHA-256 "+hexSHA(data)) ||
		strings.Contains(out, "source: ") {
		t.Fatalf("verify-export without the source:\n%s", out)
	}
	if err := os.Rename(moved, src); err != nil {
		t.Fatal(err)
	}
	// A redaction manifest and an export manifest beside one file.
	os.WriteFile(red+".manifest.json", mbody, 0o600)
	cli(1, "a file is an export or a redacted copy, not both", "verify-export", red)
	os.Remove(red + ".manifest.json")

	cli(1, red+" exists; refusing to overwrite it", "redact", src, "--redact", "0,0,32,32", "--out", red, "--as", alice)
	kept := filepath.Join(tmp, "x.keep.ts")
	if out := cli(0, "everything but 1 box made unrecognisable", "redact", src, "--keep", "200,100,160,160@0-", "--block", "24", "--out", kept, "--as", alice); !strings.Contains(out, "pixelation blocks of 24 px") {
		t.Fatalf("redact --keep printed:\n%s", out)
	}
	cli(0, "everything but 1 box made unrecognisable", "verify-export", kept)
}

// TestCLIExportRedactChecksFirst: export refuses a redaction it cannot
// make before it asks the node for anything (no node runs here, so any
// other error would be that), keeping the request's one-time key for an
// export that can be redacted.
func TestCLIExportRedactChecksFirst(t *testing.T) {
	needFFmpeg(t)
	tmp := t.TempDir()
	dir := filepath.Join(tmp, "no-node")
	out := filepath.Join(tmp, "r1.ts")
	taken := filepath.Join(tmp, "taken.ts")
	if err := os.WriteFile(taken, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		code int
		want string
		args []string
	}{
		{2, "has no area", []string{"--redact", "0,0,32,0"}},
		{2, "give --redact or --keep, not both", []string{"--redact", "0,0,32,32", "--keep", "0,0,32,32"}},
		{2, "ends before it starts", []string{"--keep", "0,0,32,32@3-1"}},
		{2, "redaction reads MPEG-TS: give --out FILE.ts", []string{"--redact", "0,0,32,32", "--out", filepath.Join(tmp, "r1.mp4")}},
		{2, "--redacted-out and --block go with --redact or --keep", []string{"--redacted-out", filepath.Join(tmp, "r.ts")}},
		{2, "--redacted-out and --block go with --redact or --keep", []string{"--block", "32"}},
		{2, "--redacted-out is the export itself", []string{"--redact", "0,0,32,32", "--redacted-out", out}},
		{1, taken + " exists; refusing to overwrite it", []string{"--redact", "0,0,32,32", "--redacted-out", taken}},
	} {
		args := append([]string{"export", "r1", "--dir", dir, "--as", filepath.Join(tmp, "k.key")}, c.args...)
		if !strings.Contains(strings.Join(c.args, " "), "--out") {
			args = append(args, "--out", out)
		}
		code, stdout, errOut := runCLI(args...)
		if code != c.code || !strings.Contains(errOut, c.want) || strings.Contains(errOut, "no node") {
			t.Errorf("custos %q: exit %d %s%s; want exit %d mentioning %q", args, code, stdout, errOut, c.code, c.want)
		}
	}
	// With a good redaction the export goes on to the node.
	code, _, errOut := runCLI("export", "r1", "--dir", dir, "--as", filepath.Join(tmp, "k.key"), "--out", out, "--redact", "0,0,32,32")
	if code != 1 || !strings.Contains(errOut, "no node is running there") {
		t.Errorf("a good redaction refused: exit %d %s", code, errOut)
	}
	if got := redactedName("/a/theft-1.ts"); got != "/a/theft-1.redacted.ts" {
		t.Errorf("redactedName = %s", got)
	}
	if got := redactedName("/a/b.c/theft"); got != "/a/b.c/theft.redacted" {
		t.Errorf("redactedName = %s", got)
	}
}

// checkRedactWithPolicy: with --dir, redact verifies the export against
// the exporter's key in the policy, and verify-export proves who redacted.
func checkRedactWithPolicy(t *testing.T, tmp, dir, aliceFile string) {
	t.Helper()
	if _, err := exec.LookPath("ffmpeg"); err != nil {
		t.Log("ffmpeg is not installed: redact --dir not tested")
		return
	}
	k, err := keys.LoadAdminKey(aliceFile, []byte(testPassphrase))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	src, red := filepath.Join(tmp, "sar.ts"), filepath.Join(tmp, "sar.redacted.ts")
	writeSignedExport(t, src, fixtureTS(t, 50), 50, k)
	if code, out, errOut := runCLI("redact", src, "--redact", "0,0,64,64", "--out", red, "--as", aliceFile, "--dir", dir); code != 0 ||
		!strings.Contains(out, "alice's key in the policy") {
		t.Fatalf("redact --dir: exit %d %s%s", code, out, errOut)
	}
	code, out, errOut := runCLI("verify-export", red, "--dir", dir)
	if code != 0 || !strings.HasPrefix(out, "OK: ") || !strings.Contains(out, "redactor: alice is a user of federation \"acme\"") ||
		!strings.Contains(out, "source: "+src) || strings.Contains(out, "not checked") {
		t.Fatalf("verify-export --dir of a redacted file: exit %d %s%s", code, out, errOut)
	}
}

// TestRedactAfterExport: once the export is written, a box that does not
// fit the frame is a usage error that keeps the export and its manifest
// and names the custos redact command that redacts it; a box that fits
// makes the copy beside it.
func TestRedactAfterExport(t *testing.T) {
	needFFmpeg(t)
	tmp := t.TempDir()
	k, err := keys.NewAdminKey("alice", time.Now().Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	src := filepath.Join(tmp, "r1.ts")
	data := fixtureTS(t, 50)
	body := writeSignedExport(t, src, data, 50, k)
	m, err := keys.ParseManifest(body)
	if err != nil {
		t.Fatal(err)
	}
	red := redactedName(src)
	again := "custos redact " + src + " --redact 600,300,64,64 --out " + red + " --as alice.key --dir d"
	var out bytes.Buffer
	opts := redact.Options{Mode: redact.Redact, Boxes: []redact.Box{{X: 600, Y: 300, W: 64, H: 64}}}
	err = redactAfterExport(context.Background(), &out, src, m, body, k, opts, red, again)
	if !errors.As(err, new(usageError)) || !strings.Contains(err.Error(), "extends past the 640x360 frame") ||
		!strings.Contains(err.Error(), "the export "+src+" and its manifest are complete and kept (its one-time key is spent): redact it with "+again) {
		t.Fatalf("a box past the frame after the export: %v", err)
	}
	if got, _ := os.ReadFile(src); !bytes.Equal(got, data) {
		t.Fatal("the export changed")
	}
	for _, p := range []string{red, red + ".redaction.json"} {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Fatalf("%s exists after a refused redaction", p)
		}
	}
	opts.Boxes = []redact.Box{{X: 576, Y: 296, W: 64, H: 64, From: time.Second}}
	if err := redactAfterExport(context.Background(), &out, src, m, body, k, opts, red, again); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "redacted r1.ts: "+red+", 50 frames") || !strings.Contains(out.String(), "box 1: 576,296 64x64 from 1s to the end\n") {
		t.Fatalf("printed:\n%s", out.String())
	}
	if code, vout, errOut := runCLI("verify-export", red); code != 0 || !strings.Contains(vout, "source: "+src) {
		t.Fatalf("verify-export of the copy: exit %d %s%s", code, vout, errOut)
	}
}
