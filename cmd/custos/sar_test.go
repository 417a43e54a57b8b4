package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custos-cctv/custos/policy"
)

// The sar commands against a running datacenter, one federation for all:
// bad input; a request opened, listed with its days left, extended once
// (a second extension refused, exit 4), closed with the files' hash; and
// one received 40 days ago flagged by sar list and status.
func TestCLISubjectAccess(t *testing.T) {
	tmp := t.TempDir()
	setPass(t, "a long enough passphrase")
	alice := filepath.Join(tmp, "alice.key")
	if code, _, errOut := runCLI("admin", "keygen", "--out", alice, "--name", "alice"); code != 0 {
		t.Fatalf("keygen: %s", errOut)
	}
	dir := filepath.Join(tmp, "dc-a")
	port := freeLoopbackPort(t)
	rk := newRecoveryKey(t, tmp)
	if code, _, errOut := runCLI("init", "--dir", dir, "--name", "dc-a", "--listen", net.JoinHostPort("127.0.0.1", itoa(port)),
		"--federation", "acme", "--admin-key", alice+".pub", "--recovery", rk+".pub"); code != 0 {
		t.Fatal(errOut)
	}
	cancel, done := startUp(dir, port)
	defer func() { cancel(); <-done }()
	waitCLI(t, "members", "--dir", dir)
	must := func(t *testing.T, args ...string) (string, string) {
		t.Helper()
		code, out, errOut := runCLI(args...)
		if code != 0 {
			t.Fatalf("custos %q: exit %d: %s%s", args, code, out, errOut)
		}
		return out, errOut
	}
	refused := func(t *testing.T, code int, want string, args ...string) {
		t.Helper()
		c, out, errOut := runCLI(args...)
		if c != code || !strings.Contains(out+errOut, want) {
			t.Errorf("custos %q: exit %d %s%s; want exit %d mentioning %q", args, c, out, errOut, code, want)
		}
	}
	must(t, "site", "add", "--name", "praha-1", "--dir", dir, "--as", alice)
	must(t, "camera", "add", "--site", "praha-1", "--name", "door", "--source", "rtsp://10.0.0.7/s1", "--purpose", "protection of property", "--dir", dir, "--as", alice)
	signing := []string{"--dir", dir, "--as", alice}
	now := time.Now().UTC()
	today := now.Format(time.DateOnly)
	open := func(extra ...string) []string {
		return append(append([]string{"sar", "open", "--subject", "J. Novák / ref 2026-114", "--cameras", "praha-1/door", "--from", "2h", "--to", "1h"}, extra...), signing...)
	}
	aHash := strings.Repeat("ab", 32)

	t.Run("bad input", func(t *testing.T) {
		refused(t, 2, "--subject, --received, --cameras, --from and --to are required", "sar", "open", "--subject", "x", "--dir", dir, "--as", alice)
		refused(t, 2, `--received "2026-13-01": want a date YYYY-MM-DD`, open("--received", "2026-13-01")...)
		refused(t, 2, `--received "yesterday": want a date YYYY-MM-DD`, open("--received", "yesterday")...)
		tomorrow := now.AddDate(0, 0, 1).Format(time.DateOnly)
		refused(t, 2, "--received "+tomorrow+" is after today", open("--received", tomorrow)...)
		refused(t, 2, "is not before --to", "sar", "open", "--subject", "x", "--received", today, "--cameras", "praha-1/door", "--from", "1h", "--to", "2h", "--dir", dir, "--as", alice)
		// The policy's own refusal: exit 4.
		refused(t, 4, `camera selector "praha-1/nope" matches no camera`, "sar", "open", "--subject", "x", "--received", today, "--cameras", "praha-1/nope",
			"--from", "2h", "--to", "1h", "--dir", dir, "--as", alice)
		refused(t, 2, "--by 3mo: art. 12(3) allows one extension of at most 2 months", append([]string{"sar", "extend", "sar-1", "--by", "3mo", "--reason", "r"}, signing...)...)
		refused(t, 2, `--by "2w": want 1mo or 2mo`, append([]string{"sar", "extend", "sar-1", "--by", "2w", "--reason", "r"}, signing...)...)
		refused(t, 2, `--by "0mo": want 1mo or 2mo`, append([]string{"sar", "extend", "sar-1", "--by", "0mo", "--reason", "r"}, signing...)...)
		refused(t, 2, "--by and --reason are required", append([]string{"sar", "extend", "sar-1", "--by", "1mo"}, signing...)...)
		refused(t, 2, "which subject access request? give its ID", append([]string{"sar", "extend", "--by", "1mo", "--reason", "r"}, signing...)...)
		refused(t, 1, `no subject access request "nope" in the policy of the node in `+dir, append([]string{"sar", "extend", "nope", "--by", "1mo", "--reason", "r"}, signing...)...)
		refused(t, 1, `no subject access request "nope" in the policy of the node in `+dir, append([]string{"sar", "close", "nope", "--answered", today, "--files-hash", aHash}, signing...)...)
		refused(t, 2, `--files-hash "abc": want a SHA-256, 64 hex digits`, append([]string{"sar", "close", "nope", "--answered", today, "--files-hash", "abc"}, signing...)...)
		refused(t, 2, "give --files or --files-hash, not both", append([]string{"sar", "close", "nope", "--answered", today, "--files-hash", aHash, "--files", alice + ".pub"}, signing...)...)
		refused(t, 2, "give the files sent", append([]string{"sar", "close", "nope", "--answered", today}, signing...)...)
		refused(t, 2, `--answered "2026-02-30": want a date`, append([]string{"sar", "close", "nope", "--answered", "2026-02-30", "--files-hash", aHash}, signing...)...)
		refused(t, 2, "--dir is required", "sar", "list")
	})

	t.Run("open, list, extend, close", func(t *testing.T) {
		out, hints := must(t, open("--received", today, "--id", "sar-1")...)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		day0, _ := time.Parse(time.DateOnly, today)
		a := &policy.SubjectAccess{Received: day0}
		deadline := a.Deadline().Format(time.DateOnly)
		t.Logf("sar open hinted:\n%s", hints)
		if lines[len(lines)-1] != "sar-1" || !strings.Contains(hints, "answer by "+deadline) || !strings.Contains(hints, "custos request --cameras 'praha-1/door'") ||
			!strings.Contains(hints, "--redact") || !strings.Contains(hints, "custos sar close sar-1") {
			t.Fatalf("sar open printed %q, hinted:\n%s", out, hints)
		}
		out, _ = must(t, "sar", "list", "--dir", dir)
		row := strings.Fields(lineOf(out, "sar-1 "))
		// ID, J., Novák, /, ref, 2026-114, RECEIVED, DEADLINE, DAYS LEFT, STATE, CAMERAS, RANGE…
		if len(row) < 11 || row[6] != today || row[7] != deadline || row[8] != itoa(a.DaysLeft(time.Now())) || row[9] != "open" || row[10] != "praha-1/door" {
			t.Fatalf("sar list:\n%s", out)
		}
		checkZoned(t, "sar list", out)
		if out, _ := must(t, "status", "--dir", dir); strings.Contains(out, "OVERDUE") {
			t.Fatalf("status warns of no overdue request:\n%s", out)
		}

		out, _ = must(t, append([]string{"sar", "extend", "sar-1", "--by", "2mo", "--reason", "many requests this month"}, signing...)...)
		a.Extension = &policy.SARExtension{Months: 2}
		extended := a.Deadline().Format(time.DateOnly)
		if !strings.Contains(out, "sar-1: deadline extended by 2 months to "+extended) {
			t.Fatalf("sar extend printed:\n%s", out)
		}
		refused(t, 4, `subject access request "sar-1" was already extended by 2 months on `+today+" (many requests this month): art. 12(3) allows one extension",
			append([]string{"sar", "extend", "sar-1", "--by", "1mo", "--reason", "again"}, signing...)...)
		out, _ = must(t, "sar", "list", "--dir", dir)
		if row := strings.Fields(lineOf(out, "sar-1 ")); len(row) < 10 || row[7] != extended || row[9] != "extended" {
			t.Fatalf("sar list after the extension:\n%s", out)
		}

		answer := t.TempDir()
		video, letter := filepath.Join(answer, "sar-1.ts"), filepath.Join(answer, "letter.pdf")
		os.WriteFile(video, []byte("the redacted footage"), 0o600)
		os.WriteFile(letter, []byte("Dear J. Novák, …"), 0o600)
		sv, sl := sha256.Sum256([]byte("the redacted footage")), sha256.Sum256([]byte("Dear J. Novák, …"))
		// letter.pdf sorts before sar-1.ts.
		want := sha256.Sum256([]byte(hex.EncodeToString(sl[:]) + "  letter.pdf\n" + hex.EncodeToString(sv[:]) + "  sar-1.ts\n"))
		out, _ = must(t, append([]string{"sar", "close", "sar-1", "--answered", today, "--files", video, "--files", letter}, signing...)...)
		if !strings.Contains(out, "sar-1 closed: answered on "+today+", files hash "+hex.EncodeToString(want[:])) ||
			!strings.Contains(out, "  "+hex.EncodeToString(sl[:])+"  letter.pdf\n") {
			t.Fatalf("sar close printed:\n%s", out)
		}
		refused(t, 4, `subject access request "sar-1" was closed on `+today+" by alice", append([]string{"sar", "close", "sar-1", "--answered", today, "--files-hash", aHash}, signing...)...)
		out, _ = must(t, "sar", "list", "--dir", dir, "--all", "--json")
		var rows []struct {
			ID       string
			State    string
			DaysLeft *int `json:"days_left"`
			Closure  *struct {
				Files string `json:"files_hash"`
				By    string
			}
		}
		if err := json.Unmarshal([]byte(out), &rows); err != nil || len(rows) != 1 || rows[0].ID != "sar-1" || rows[0].State != "closed" ||
			rows[0].DaysLeft != nil || rows[0].Closure == nil || rows[0].Closure.Files != hex.EncodeToString(want[:]) || rows[0].Closure.By != "alice" {
			t.Fatalf("sar list --all --json: %v\n%s", err, out)
		}
		out, hints = must(t, "sar", "list", "--dir", dir)
		if strings.Contains(out, "sar-1") || !strings.Contains(hints, "1 closed (custos sar list --all lists them)") {
			t.Fatalf("sar list without --all: %s%s", out, hints)
		}
		if out, _ := must(t, "sar", "list", "--dir", dir, "--all"); !strings.Contains(lineOf(out, "sar-1 "), " closed ") {
			t.Fatalf("sar list --all:\n%s", out)
		}
	})

	t.Run("overdue", func(t *testing.T) {
		received := now.AddDate(0, 0, -40).Format(time.DateOnly)
		_, hints := must(t, open("--received", received, "--id", "sar-old")...)
		day0, _ := time.Parse(time.DateOnly, received)
		a := &policy.SubjectAccess{Received: day0}
		if !strings.Contains(hints, "its deadline was "+a.Deadline().Format(time.DateOnly)+" (") || !strings.Contains(hints, "days overdue); answer it now") {
			t.Errorf("sar open of an overdue request hinted:\n%s", hints)
		}
		out, _ := must(t, "sar", "list", "--dir", dir)
		if row := strings.Fields(lineOf(out, "sar-old ")); len(row) < 10 || row[8] != itoa(a.DaysLeft(time.Now())) || row[9] != "OVERDUE" || a.DaysLeft(time.Now()) >= 0 {
			t.Fatalf("sar list of a request received 40 days ago:\n%s", out)
		}
		t.Logf("sar list:\n%s", out)
		out, _ = must(t, "status", "--dir", dir)
		t.Logf("status: %s", lineOf(out, "OVERDUE "))
		if l := lineOf(out, "OVERDUE "); !strings.Contains(l, "sar-old (deadline "+a.Deadline().Format(time.DateOnly)+", ") || strings.Contains(l, "Novák") {
			t.Fatalf("status does not name the overdue request (by ID only):\n%s", out)
		}
		var st struct {
			Name        string   `json:"name"`
			OverdueSARs []string `json:"overdue_sars"`
		}
		if out, _ = must(t, "status", "--dir", dir, "--json"); json.Unmarshal([]byte(out), &st) != nil || st.Name != "dc-a" || len(st.OverdueSARs) != 1 || st.OverdueSARs[0] != "sar-old" {
			t.Fatalf("status --json: %+v\n%s", st, out)
		}
		refused(t, 4, "its deadline "+a.Deadline().Format(time.DateOnly)+" has passed", append([]string{"sar", "extend", "sar-old", "--by", "1mo", "--reason", "late"}, signing...)...)
	})
	// The controller's other duties share this datacenter.
	t.Run("controller and breaches", func(t *testing.T) { checkControllerAndBreaches(t, dir, alice, must, refused) })
	t.Run("alerts", func(t *testing.T) { checkAlerts(t, dir, alice, must, refused) })
}

// The files' hash is what the documented shell line computes, names each
// file by its base name in byte order, and refuses what it cannot name.
func TestSARFilesHash(t *testing.T) {
	d := t.TempDir()
	files := map[string]string{"b c.ts": "footage", "A.pdf": "letter", "a.txt": ""}
	var paths []string
	for name, body := range files {
		p := filepath.Join(d, name)
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	sum, lines, err := filesHash(paths)
	if err != nil {
		t.Fatal(err)
	}
	var text string
	for _, name := range []string{"A.pdf", "a.txt", "b c.ts"} { // byte order
		h := sha256.Sum256([]byte(files[name]))
		text += hex.EncodeToString(h[:]) + "  " + name + "\n"
	}
	if want := sha256.Sum256([]byte(text)); sum != hex.EncodeToString(want[:]) || strings.Join(lines, "\n")+"\n" != text {
		t.Fatalf("filesHash = %s\n%s\nwant %x over\n%s", sum, strings.Join(lines, "\n"), want, text)
	}
	if _, err := exec.LookPath("sha256sum"); err == nil {
		cmd := exec.Command("sh", "-c", `cd "$1" && sha256sum 'b c.ts' a.txt A.pdf | LC_ALL=C sort -k2 | sha256sum`, "sh", d)
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		if got := strings.Fields(string(out))[0]; got != sum {
			t.Errorf("the shell line sar close -h documents gives %s, filesHash %s", got, sum)
		}
	}
	// The same files in another directory, given in another order, hash
	// the same.
	sub := filepath.Join(d, "sub")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	var again []string
	for _, name := range []string{"b c.ts", "a.txt", "A.pdf"} {
		os.WriteFile(filepath.Join(sub, name), []byte(files[name]), 0o600)
		again = append(again, filepath.Join(sub, name))
	}
	if s2, _, err := filesHash(again); err != nil || s2 != sum {
		t.Errorf("the same files elsewhere and in another order: %s %v, want %s", s2, err, sum)
	}
	os.WriteFile(filepath.Join(sub, "a.txt"), []byte("changed"), 0o600)
	if s2, _, err := filesHash(again); err != nil || s2 == sum {
		t.Errorf("a changed file: %s %v, want a hash other than %s", s2, err, sum)
	}
	moved := filepath.Join(sub, "a.txt")
	for _, c := range []struct {
		paths []string
		want  string
	}{
		{[]string{filepath.Join(d, "a.txt"), moved}, "have the same name a.txt"},
		{[]string{filepath.Join(d, "sub")}, "is not a regular file"},
		{[]string{filepath.Join(d, "none")}, "no such file"},
		{[]string{filepath.Join(d, `x\y`)}, "backslash or a control character"},
		{[]string{filepath.Join(d, "x\ny")}, "backslash or a control character"},
	} {
		if _, _, err := filesHash(c.paths); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("filesHash(%q): %v, want an error saying %q", c.paths, err, c.want)
		}
	}
}

// On a terminal the overdue rows are red, and the colour leaves the
// columns where they were.
func TestSARTableColour(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	st := &policy.State{SubjectAccess: map[string]*policy.SubjectAccess{
		"sar-a": {ID: "sar-a", Subject: "ref 1", Received: time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC), Cameras: []string{"praha-1/door"}, From: now.Add(-2 * time.Hour), To: now.Add(-time.Hour)},
		"sar-b": {ID: "sar-b", Subject: "a much longer reference", Received: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), Cameras: []string{"praha-1/door"}, From: now.Add(-2 * time.Hour), To: now.Add(-time.Hour)},
		"sar-c": {ID: "sar-c", Subject: "ref 3", Received: time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC), Cameras: []string{"praha-1/door"}, From: now.Add(-2 * time.Hour), To: now.Add(-time.Hour),
			Closure: &policy.SARClosure{Answered: time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)}},
	}}
	rows, closed := sarRows(st, now, false)
	if len(rows) != 2 || closed != 1 || rows[0].ID != "sar-a" || rows[0].State != "OVERDUE" || *rows[0].DaysLeft != -35 || rows[1].State != "open" || *rows[1].DaysLeft != 26 {
		t.Fatalf("sarRows: %d closed, %+v", closed, rows)
	}
	var plain, coloured strings.Builder
	if err := writeSARTable(&plain, rows, false); err != nil {
		t.Fatal(err)
	}
	if err := writeSARTable(&coloured, rows, true); err != nil {
		t.Fatal(err)
	}
	pl, cl := strings.Split(plain.String(), "\n"), strings.Split(coloured.String(), "\n")
	if strings.Contains(plain.String(), "\033") || len(cl) != 4 || !strings.HasPrefix(cl[1], red+"sar-a ") || !strings.HasSuffix(cl[1], colorOff) ||
		strings.Contains(cl[0]+cl[2], "\033") {
		t.Fatalf("coloured table:\n%q", cl)
	}
	if strings.ReplaceAll(strings.ReplaceAll(coloured.String(), red, ""), colorOff, "") != plain.String() {
		t.Fatalf("colour moved the columns:\n%s\n%s", plain.String(), coloured.String())
	}
	if strings.Index(pl[1], "OVERDUE") != strings.Index(pl[0], "STATE") || strings.Index(pl[2], "open") != strings.Index(pl[0], "STATE") {
		t.Fatalf("columns do not line up:\n%s", plain.String())
	}
}
