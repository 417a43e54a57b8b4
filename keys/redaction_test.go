package keys

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var testRedacted = bytes.Repeat([]byte("redacted ts "), 2048)

// testRedaction describes testRedacted, made from testExport whose
// manifest body is exportManifest.
func testRedaction(exportManifest []byte) *RedactionManifest {
	m := testManifest(testExport)
	return &RedactionManifest{
		Version: RedactionVersion, Federation: m.Federation, RequestID: m.RequestID, Redactor: m.Exporter,
		Created: time.Date(2026, 5, 3, 9, 0, 0, 5, time.UTC),
		Source: RedactionSource{Name: m.Output.Name, Bytes: m.Output.Bytes, SHA256: m.Output.SHA256,
			ManifestSHA256: hexSum(exportManifest), Frames: m.Output.Frames, Width: 640, Height: 360},
		Mode: "redact",
		Boxes: []RedactionBox{{X: 101, Y: 50, W: 128, H: 97, From: "0s"},
			{X: 0, Y: 0, W: 640, H: 360, From: "2.5s", To: "1m30s"}},
		Applied: []RedactionBox{{X: 100, Y: 50, W: 130, H: 98, From: "0s"},
			{X: 0, Y: 0, W: 640, H: 360, From: "2.5s", To: "1m30s"}},
		BlockPx: 16, BlurPx: 8, Encoder: "libx264 preset veryfast crf 20",
		Filter: "[0:v]setpts=PTS-STARTPTS,split=3[base][s0][s1];…", Tool: "ffmpeg version 5.1.6-0+deb12u1",
		Output: ManifestOutput{Name: "export-0042.redacted.ts", Bytes: int64(len(testRedacted)), SHA256: hexSum(testRedacted), Frames: m.Output.Frames},
	}
}

func signedTestRedaction(t *testing.T) (exportBody, body, sig []byte) {
	t.Helper()
	exporter, _ := testAdmins(t)
	exportBody, _, err := SignManifest(exporter, testManifest(testExport))
	if err != nil {
		t.Fatal(err)
	}
	body, sig, err = SignRedaction(exporter, testRedaction(exportBody))
	if err != nil {
		t.Fatal(err)
	}
	return exportBody, body, sig
}

func TestRedactionSignVerify(t *testing.T) {
	exporter, _ := testAdmins(t)
	exportBody, body, sig := signedTestRedaction(t)
	r, fp, err := VerifyRedaction(body, sig, exporter.PublicKey())
	if err != nil {
		t.Fatal(err)
	}
	want := testRedaction(exportBody)
	if fp != exporter.Fingerprint() || !r.Created.Equal(want.Created) || r.Output != want.Output || r.Source != want.Source ||
		len(r.Boxes) != 2 || r.Boxes[1] != want.Boxes[1] || r.Applied[0] != want.Applied[0] || r.Tool != want.Tool {
		t.Fatalf("decoded %+v by %s", r, fp)
	}
	if err := CheckRedacted(r, bytes.NewReader(testRedacted)); err != nil {
		t.Fatal(err)
	}
	if err := CheckRedactionSource(r, testManifest(testExport), exportBody); err != nil {
		t.Fatal(err)
	}
	// The spans read as written: "to" is left out for the clip's end.
	if !bytes.Contains(body, []byte(`"from": "2.5s",`)) || !bytes.Contains(body, []byte(`"to": "1m30s"`)) || bytes.Count(body, []byte(`"to"`)) != 2 {
		t.Errorf("box spans encoded as:\n%s", body)
	}
}

// TestRedactionTamperIsRefused: a changed box, output hash, source hash or
// source manifest hash in a signed redaction manifest fails its signature;
// re-signed by another key it fails against the redactor's key; a
// signature is bound to its domain both ways.
func TestRedactionTamperIsRefused(t *testing.T) {
	exporter, other := testAdmins(t)
	exportBody, body, sig := signedTestRedaction(t)
	r := testRedaction(exportBody)
	pub := exporter.PublicKey()
	for what, edit := range map[string][2]string{
		"box":             {`"x": 101`, `"x": 133`},
		"box span":        {`"to": "1m30s"`, `"to": "1m0s"`},
		"output hash":     {r.Output.SHA256, hexSum([]byte("another file"))},
		"source hash":     {`"sha256": "` + r.Source.SHA256, `"sha256": "` + hexSum([]byte("another export"))},
		"source manifest": {r.Source.ManifestSHA256, hexSum([]byte("another manifest"))},
		"mode":            {`"mode": "redact"`, `"mode": "keep"`},
		"block":           {`"block_px": 16`, `"block_px": 99`},
	} {
		if !bytes.Contains(body, []byte(edit[0])) {
			t.Fatalf("%s: %q is not in the manifest", what, edit[0])
		}
		bad := bytes.ReplaceAll(body, []byte(edit[0]), []byte(edit[1])) // a box's span is in boxes and applied
		if _, err := ParseRedaction(bad); err != nil {
			t.Fatalf("%s: the edited manifest is not even well-formed, so this proves nothing: %v", what, err)
		}
		if _, _, err := VerifyRedaction(bad, sig, pub); !errors.Is(err, ErrRedactionSignature) {
			t.Errorf("%s changed: %v", what, err)
		}
	}
	for i := range body {
		bad := bytes.Clone(body)
		bad[i] ^= 0x01
		if _, _, err := VerifyRedaction(bad, sig, pub); !errors.Is(err, ErrRedactionSignature) {
			t.Fatalf("body byte %d changed: %v", i, err)
		}
	}
	if _, _, err := VerifyRedaction(body, sig, other.PublicKey()); !errors.Is(err, ErrRedactionSignature) {
		t.Errorf("verified with another admin's key: %v", err)
	}
	body2, sig2, err := SignRedaction(other, r)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyRedaction(body2, sig2, pub); !errors.Is(err, ErrRedactionSignature) {
		t.Errorf("another admin's redaction verified with the exporter's key: %v", err)
	}
	// An export manifest's signature is no redaction's, and back.
	msig, err := exporter.Sign(manifestSigned(body), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyRedaction(body, msig, pub); !errors.Is(err, ErrRedactionSignature) {
		t.Errorf("a signature under the manifest domain passed for a redaction: %v", err)
	}
	_, esig, err := SignManifest(exporter, testManifest(testExport))
	if err != nil {
		t.Fatal(err)
	}
	rsig, _ := exporter.Sign(redactionSigned(exportBody), time.Now())
	if _, _, err := VerifyManifest(exportBody, rsig, pub); !errors.Is(err, ErrManifestSignature) {
		t.Errorf("a signature under the redaction domain passed for an export manifest: %v", err)
	}
	if _, _, err := VerifyManifest(exportBody, esig, pub); err != nil {
		t.Fatal(err)
	}
	if _, _, err := VerifyRedaction(exportBody, esig, pub); err == nil {
		t.Error("an export manifest verified as a redaction")
	}
}

func TestCheckRedacted(t *testing.T) {
	exportBody, _, _ := signedTestRedaction(t)
	r := testRedaction(exportBody)
	flipped := bytes.Clone(testRedacted)
	flipped[len(flipped)/2] ^= 1
	for name, b := range map[string][]byte{
		"flipped":   flipped,
		"truncated": testRedacted[:len(testRedacted)-1],
		"extended":  append(bytes.Clone(testRedacted), 0),
	} {
		if err := CheckRedacted(r, bytes.NewReader(b)); !errors.Is(err, ErrRedactedMismatch) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if err := CheckRedacted(nil, bytes.NewReader(testRedacted)); err == nil {
		t.Error("no manifest: accepted")
	}
}

// TestCheckRedactionSource: another export, another manifest body, or an
// export of another request is not the redaction's source.
func TestCheckRedactionSource(t *testing.T) {
	exportBody, _, _ := signedTestRedaction(t)
	r := testRedaction(exportBody)
	m := testManifest(testExport)
	other := testManifest(bytes.Repeat([]byte("other"), 10))
	req := testManifest(testExport)
	req.RequestID = "r-other"
	for name, c := range map[string]struct {
		m    *Manifest
		body []byte
	}{
		"another export":        {other, exportBody},
		"another manifest body": {m, append(bytes.Clone(exportBody), ' ')},
		"another request":       {req, exportBody},
	} {
		if err := CheckRedactionSource(r, c.m, c.body); !errors.Is(err, ErrRedactionSource) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseRedactionRefuses(t *testing.T) {
	exportBody, good, _ := signedTestRedaction(t)
	if _, err := ParseRedaction(good); err != nil {
		t.Fatal(err)
	}
	for name, edit := range map[string]func(r *RedactionManifest){
		"version":             func(r *RedactionManifest) { r.Version = 2 },
		"mode":                func(r *RedactionManifest) { r.Mode = "blur" },
		"no boxes":            func(r *RedactionManifest) { r.Boxes, r.Applied = nil, nil },
		"applied count":       func(r *RedactionManifest) { r.Applied = r.Applied[:1] },
		"applied span":        func(r *RedactionManifest) { r.Applied[0].To = "5s" },
		"box past the frame":  func(r *RedactionManifest) { r.Boxes[0].X = 600 },
		"box above the frame": func(r *RedactionManifest) { r.Boxes[0].Y = -1 },
		"box without area":    func(r *RedactionManifest) { r.Boxes[0].W = 0 },
		"span reversed":       func(r *RedactionManifest) { r.Boxes[1].From = "2m0s"; r.Applied[1].From = "2m0s" },
		"span not canonical":  func(r *RedactionManifest) { r.Boxes[0].From = "0"; r.Applied[0].From = "0" },
		"span negative":       func(r *RedactionManifest) { r.Boxes[0].From = "-1s"; r.Applied[0].From = "-1s" },
		"frames differ":       func(r *RedactionManifest) { r.Output.Frames-- },
		"output is source":    func(r *RedactionManifest) { r.Output.Name = r.Source.Name },
		"output in a dir":     func(r *RedactionManifest) { r.Output.Name = "../x.ts" },
		"source hash":         func(r *RedactionManifest) { r.Source.SHA256 = strings.ToUpper(r.Source.SHA256) },
		"manifest hash":       func(r *RedactionManifest) { r.Source.ManifestSHA256 = "" },
		"no frame size":       func(r *RedactionManifest) { r.Source.Width = 0 },
		"block":               func(r *RedactionManifest) { r.BlockPx = 0 },
		"tool":                func(r *RedactionManifest) { r.Tool = "ffmpeg\x1b[2J" },
		"no tool":             func(r *RedactionManifest) { r.Tool = "" },
		"redactor":            func(r *RedactionManifest) { r.Redactor = "a b" },
		"request":             func(r *RedactionManifest) { r.RequestID = "" },
		"no time":             func(r *RedactionManifest) { r.Created = time.Time{} },
	} {
		r := testRedaction(exportBody)
		edit(r)
		if _, err := MarshalRedaction(r); !errors.Is(err, ErrBadRedaction) {
			t.Errorf("%s: marshalled: %v", name, err)
		}
		// Written without the checks, it is refused when read.
		b, err := r.encode()
		if err != nil {
			continue
		}
		if _, err := ParseRedaction(b); !errors.Is(err, ErrBadRedaction) {
			t.Errorf("%s: parsed: %v", name, err)
		}
	}
	for name, b := range map[string][]byte{
		"compact":       compactJSON(good),
		"unknown field": bytes.Replace(good, []byte(`"version": 1,`), []byte(`"version": 1, "kind": "x",`), 1),
		"trailing data": append(bytes.Clone(good), []byte("{}")...),
		"duplicate key": bytes.Replace(good, []byte(`"version": 1,`), []byte(`"version": 1, "version": 1,`), 1),
		"empty":         nil,
	} {
		if _, err := ParseRedaction(b); !errors.Is(err, ErrBadRedaction) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// TestRedactionSignatureWithGnuPG: the command in the package comment
// checks a redaction manifest with a standard tool.
func TestRedactionSignatureWithGnuPG(t *testing.T) {
	gpg, err := exec.LookPath("gpg")
	if err != nil {
		t.Skip("gpg not installed")
	}
	exporter, _ := testAdmins(t)
	_, body, sig := signedTestRedaction(t)
	dir, home := t.TempDir(), t.TempDir()
	for name, b := range map[string][]byte{"x.ts.redaction.json": body, "x.ts.redaction.sig": sig, "erin.pub": exporter.ArmoredPublicKey()} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command(gpg, "--homedir", home, "--batch", "--import", filepath.Join(dir, "erin.pub")).CombinedOutput(); err != nil {
		t.Fatalf("gpg --import: %v\n%s", err, out)
	}
	for domain, good := range map[string]bool{"custos/redaction/v1": true, "custos/manifest/v1": false} {
		script := `{ printf '` + domain + `\0'; cat x.ts.redaction.json; } | "$GPG" --homedir "$GH" --batch --verify x.ts.redaction.sig -`
		cmd := exec.Command("sh", "-c", script)
		cmd.Dir, cmd.Env = dir, append(os.Environ(), "GPG="+gpg, "GH="+home)
		out, err := cmd.CombinedOutput()
		if ok := err == nil && strings.Contains(string(out), "Good signature"); ok != good {
			t.Errorf("gpg --verify under %s: %v\n%s", domain, err, out)
		}
	}
}
