package main

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// writeConfig writes a config file as an operator would: 0600, in a
// directory only its owner writes.
func writeConfig(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "custos.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// A config file sets up's flags by their names; a flag on the command line
// wins over the file, and the rest of the file still applies.
func TestConfigCommandLineWins(t *testing.T) {
	p := writeConfig(t, `
dir = "/srv/custos/a"
listen = "127.0.0.1:51820"
quiet = true
uplink-mbit = 20
log-format = "json"
federation = "acme"
`)
	s, err := parseUp(context.Background(), []string{"--config", p, "--uplink-mbit", "5.5", "--dir", "/srv/custos/b"})
	if err != nil {
		t.Fatal(err)
	}
	if s.dir != "/srv/custos/b" || s.uplinkMbit != 5.5 {
		t.Errorf("the command line did not win: dir %q, uplink %v", s.dir, s.uplinkMbit)
	}
	if s.listen.String() != "127.0.0.1:51820" || !s.quiet || s.logFormat != "json" || s.fed != "acme" {
		t.Errorf("the file's other settings were not applied: %+v", s)
	}
	// A command-line bool switched off beats the file's true.
	s, err = parseUp(context.Background(), []string{"--quiet=false", "--config", p})
	if err != nil || s.quiet {
		t.Errorf("--quiet=false over quiet = true: %+v, %v", s, err)
	}
	// Without --config nothing is read.
	if _, err := parseUp(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "--dir is required") {
		t.Errorf("no flags: %v", err)
	}
}

// Bad files are refused with the file, the line and the key, as a usage
// error (exit status 2), before anything starts.
func TestConfigRefusesBadKeys(t *testing.T) {
	for _, c := range []struct{ name, text, want string }{
		{"unknown key", "dir = \"/d\"\nlisten = \"127.0.0.1:1\"\nlistn = \"x\"\n", `:3: key listn: unknown key; want one of custos up's flags: dir, federation, listen`},
		{"wrong type string", "dir = \"/d\"\n\nlisten = 51820\n", `:3: key listen: want a string (in double quotes), as --listen takes, not an integer`},
		{"wrong type bool", "quiet = \"yes\"\ndir = \"/d\"\n", `:1: key quiet: want a boolean (true or false), as --quiet takes, not a string`},
		{"wrong type number", "uplink-mbit = \"20\"\n", `:1: key uplink-mbit: want a number, as --uplink-mbit takes, not a string`},
		{"array", "dir = [\"/a\", \"/b\"]\n", `:1: key dir: want a string (in double quotes), as --dir takes, not an array`},
		{"table", "dir = \"/d\"\n[metrics]\naddr = \"127.0.0.1:9\"\n", `:2: key metrics: want a string (in double quotes), as --metrics takes, not a table`},
		{"twice", "dir = \"/d\"\nlisten = \"127.0.0.1:1\"\ndir = \"/e\"\n", `:3: key dir: given twice`},
		{"malformed", "dir = \"/d\nlisten = \"127.0.0.1:1\"\n", `:1: key dir: strings cannot contain newlines`},
		{"no equals", "dir \"/d\"\n", `:1: `},
		{"config in config", "config = \"/etc/other.toml\"\n", `:1: key config: a config file cannot name another`},
		{"secret", "dir = \"/d\"\nadmin-passphrase = \"hunter22\"\n", `:2: key admin-passphrase: secrets do not go in a config file`},
		{"bad value", "dir = \"/d\"\nlisten = \"127.0.0.1:1\"\nuplink-mbit = -3\n", `--uplink-mbit -3: want 0 (unlimited) to 1000000 (`},
		{"bad listen", "dir = \"/d\"\nlisten = \"0.0.0.0:51820\"\n", `not a wildcard`},
		{"bad log format", "dir = \"/d\"\nlisten = \"127.0.0.1:1\"\nlog-format = \"xml\"\n", `--log-format "xml": want text or json (`},
	} {
		p := writeConfig(t, c.text)
		code, _, errOut := runCLI("up", "--config", p)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("%s: exit %d, want 2 and %q:\n%s", c.name, code, c.want, errOut)
		}
		if !strings.Contains(errOut, p) {
			t.Errorf("%s: the error does not name the file %s:\n%s", c.name, p, errOut)
		}
		code2, _, errOut2 := runCLI("config", "check", "--config", p)
		if code2 != 2 || !strings.Contains(errOut2, c.want) {
			t.Errorf("config check, %s: exit %d:\n%s", c.name, code2, errOut2)
		}
	}
	// A value that came from the file names its line in up's own check.
	p := writeConfig(t, "dir = \"/d\"\nlisten = \"127.0.0.1:1\"\n\nuplink-mbit = -3\n")
	if _, err := parseUp(context.Background(), []string{"--config", p}); err == nil || !strings.HasSuffix(err.Error(), "("+p+":4: uplink-mbit)") {
		t.Errorf("uplink-mbit from the file: %v", err)
	}
	if _, _, errOut := runCLI("up", "--config", filepath.Join(t.TempDir(), "none.toml")); !strings.Contains(errOut, "no such file") {
		t.Errorf("a missing file: %s", errOut)
	}
}

// A config decides where the node's keys live: a file others could have
// written is refused, and so is one in a directory they can write.
func TestConfigRefusesFilesOthersCanWrite(t *testing.T) {
	good := "dir = \"/d\"\nlisten = \"127.0.0.1:1\"\n"
	for _, mode := range []os.FileMode{0o666, 0o620, 0o602} {
		p := writeConfig(t, good)
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		code, _, errOut := runCLI("up", "--config", p)
		if code != 1 || !strings.Contains(errOut, "writable by group or others") || !strings.Contains(errOut, "chmod go-w "+p) {
			t.Errorf("mode %04o: exit %d %s", mode, code, errOut)
		}
	}
	// Readable by all is fine: nothing in it is secret.
	p := writeConfig(t, good)
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := parseUp(context.Background(), []string{"--config", p}); err != nil {
		t.Errorf("mode 0644: %v", err)
	}
	dir := filepath.Dir(p)
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	if _, err := parseUp(context.Background(), []string{"--config", p}); err == nil || !strings.Contains(err.Error(), "could replace it") {
		t.Errorf("in a directory anyone writes: %v", err)
	}
	// A sticky directory (as /tmp) lets nobody else replace the file.
	if err := os.Chmod(dir, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	if _, err := parseUp(context.Background(), []string{"--config", p}); err != nil {
		t.Errorf("in a sticky directory: %v", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if os.Getuid() != 0 {
		t.Log("not root: a file owned by another user cannot be made here; skipping that case")
		return
	}
	if err := os.Chown(p, 4242, 4242); err != nil {
		t.Fatal(err)
	}
	_, err := parseUp(context.Background(), []string{"--config", p})
	if err == nil || !strings.Contains(err.Error(), "owned by uid 4242, neither root nor the user running custos") {
		t.Errorf("a file owned by uid 4242: %v", err)
	}
	if err := os.Chown(p, 0, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := parseUp(context.Background(), []string{"--config", p}); err != nil {
		t.Errorf("owned by root: %v", err)
	}
}

var exampleKey = regexp.MustCompile(`(?m)^(# )?([a-z][a-z0-9-]*) = (.*)$`)

// custos config example names every flag of up (but --config), each once;
// it is a good config as printed, and with every commented-out key
// uncommented too, each value taking as its flag takes it.
func TestConfigExampleCoversEveryFlag(t *testing.T) {
	code, out, errOut := runCLI("config", "example")
	if code != 0 || errOut != "" {
		t.Fatalf("config example: exit %d %s", code, errOut)
	}
	seen := map[string]int{}
	for _, m := range exampleKey.FindAllStringSubmatch(out, -1) {
		seen[m[2]]++
	}
	fs, _ := upFlagSet()
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			if seen["config"] != 0 {
				t.Error("the example sets config")
			}
			return
		}
		if seen[f.Name] != 1 {
			t.Errorf("the example has %s %d times, want once:\n%s", f.Name, seen[f.Name], out)
		}
		_, usage := flag.UnquoteUsage(f)
		if !strings.Contains(strings.Join(strings.Fields(strings.ReplaceAll(out, "\n# ", "\n")), " "), usage) {
			t.Errorf("the example lacks --%s's help %q", f.Name, usage)
		}
	})
	for k := range seen {
		if fs.Lookup(k) == nil {
			t.Errorf("the example sets %s, which up does not take", k)
		}
	}
	s, err := parseUp(context.Background(), []string{"--config", writeConfig(t, out)})
	if err != nil {
		t.Fatalf("the example as printed: %v", err)
	}
	if s.dir != "/var/lib/custos" || s.listen.String() != "192.0.2.10:51820" {
		t.Errorf("the example's settings: %+v", s)
	}
	all := exampleKey.ReplaceAllString(out, "$2 = $3")
	s, err = parseUp(context.Background(), []string{"--config", writeConfig(t, all)})
	if err != nil {
		t.Fatalf("the example with every key set: %v\n%s", err, all)
	}
	if len(s.src.lines) != len(configKeys(fs)) {
		t.Errorf("the example with every key set set %d keys, want %d", len(s.src.lines), len(configKeys(fs)))
	}
}

// custos config check prints the settings up would run with and where each
// came from; it needs --config.
func TestConfigCheck(t *testing.T) {
	p := writeConfig(t, "# a node\ndir = \"/srv/custos\"\nlisten = \"127.0.0.1:51820\"\nquiet = true\n")
	code, out, errOut := runCLI("config", "check", "--config", p)
	if code != 0 {
		t.Fatalf("config check: exit %d %s", code, errOut)
	}
	for _, want := range []string{
		"# " + p + " is good",
		"\ndir = \"/srv/custos\"  # line 2\n",
		"\nlisten = \"127.0.0.1:51820\"  # line 3\n",
		"\nquiet = true  # line 4\n",
		"\nfederation = \"custos\"  # default\n",
		"\nuplink-mbit = 0  # default\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("config check lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\nconfig = ") {
		t.Errorf("config check prints config:\n%s", out)
	}
	// What it printed is itself a good config with the same settings.
	if _, err := parseUp(context.Background(), []string{"--config", writeConfig(t, out)}); err != nil {
		t.Errorf("config check's output as a config: %v", err)
	}
	if code, _, errOut := runCLI("config", "check"); code != 2 || !strings.Contains(errOut, "--config is required") {
		t.Errorf("config check without --config: exit %d %s", code, errOut)
	}
}

// No flag of up holds a secret, so none can land in a config file (which
// refuses such keys anyway): keys, passphrases and tokens stay in files of
// their own and in the environment.
func TestUpFlagsHoldNoSecret(t *testing.T) {
	fs, _ := upFlagSet()
	// Flags that name the file a secret is in (mode 0600, checked), not
	// the secret itself.
	secretFiles := map[string]bool{"replicas-credentials": true}
	fs.VisitAll(func(f *flag.Flag) {
		if name, _ := flag.UnquoteUsage(f); secretFiles[f.Name] && name != "FILE" {
			t.Errorf("up's flag --%s should name a FILE", f.Name)
		}
		if secretKeyRE.MatchString(f.Name) && !secretFiles[f.Name] {
			t.Errorf("up's flag --%s looks like a secret; a secret must not be a config key", f.Name)
		}
	})
	p := writeConfig(t, "token = \"custos1.x\"\n")
	_, err := parseUp(context.Background(), []string{"--config", p})
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "secrets do not go in a config file") {
		t.Errorf("token in a config: %v", err)
	}
}
