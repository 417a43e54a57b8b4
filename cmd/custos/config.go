package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// custos up --config FILE: a TOML file whose top-level keys are up's flag
// names. The keys come from walking up's FlagSet, so a flag added to up is
// a config key at once; a flag given on the command line wins over the
// file. A config decides where the node's keys live, so a file others can
// change is refused, and so is any key that names a secret: secrets never
// go in a config file.

// maxConfigSize bounds what --config reads; up's settings take a few
// hundred bytes.
const maxConfigSize = 1 << 20

// secretKeyRE is a key name that would hold a secret: the refusal of an
// unknown key that matches it says why.
var secretKeyRE = regexp.MustCompile(`(?i)pass|secret|token|credential|private|key`)

// configSource says where each setting loaded from a file came from: the
// key's line in it.
type configSource struct {
	path  string
	lines map[string]int
}

// from appends to err, a check of flag name's value, where the value came
// from when it came from the file.
func (c *configSource) from(name string, err error) error {
	if c == nil || err == nil {
		return err
	}
	line, ok := c.lines[name]
	if !ok {
		return err
	}
	var ue usageError
	if errors.As(err, &ue) {
		return usageError{fmt.Errorf("%w (%s:%d: %s)", ue.error, c.path, line, name)}
	}
	return fmt.Errorf("%w (%s:%d: %s)", err, c.path, line, name)
}

// loadConfig sets fs's flags from the TOML file at path, except those
// given on the command line.
func loadConfig(fs *flag.FlagSet, path string) (*configSource, error) {
	data, err := readConfigFile(path)
	if err != nil {
		return nil, err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var raw map[string]toml.Primitive
	md, err := toml.Decode(string(data), &raw)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			// Duplicate keys and malformed lines both land here.
			msg := pe.Message
			if strings.Contains(msg, "has already been defined") {
				msg = "given twice (" + strings.TrimSuffix(msg, ".") + ")"
			}
			if pe.LastKey != "" {
				msg = fmt.Sprintf("key %s: %s", pe.LastKey, msg)
			}
			return nil, usageError{fmt.Errorf("%s:%d: %s", path, pe.Position.Line, msg)}
		}
		return nil, usageError{fmt.Errorf("%s: %w", path, err)}
	}
	src := &configSource{path: path, lines: map[string]int{}}
	for _, k := range md.Keys() { // in the file's order
		if len(k) != 1 {
			continue // inside a table, which is refused by its own key
		}
		key := k[0]
		prim := raw[key]
		line := keyLine(&md, prim)
		bad := func(format string, a ...any) error {
			return usageError{fmt.Errorf("%s:%d: key %s: %s", path, line, key, fmt.Sprintf(format, a...))}
		}
		f := fs.Lookup(key)
		switch {
		case f == nil && secretKeyRE.MatchString(key):
			// up takes no secret by flag, so none by file; a path to
			// one (--replicas-credentials) is a flag like any other.
			return nil, bad("secrets do not go in a config file")
		case key == "config":
			return nil, bad("a config file cannot name another")
		case f == nil:
			return nil, bad("unknown key; want one of custos up's flags: %s", strings.Join(configKeys(fs), ", "))
		}
		var v any
		if err := md.PrimitiveDecode(prim, &v); err != nil {
			return nil, bad("%v", err)
		}
		text, err := flagText(f, v)
		if err != nil {
			return nil, bad("%v", err)
		}
		src.lines[key] = line
		if given[key] {
			continue // the command line wins
		}
		if err := fs.Set(key, text); err != nil {
			return nil, bad("invalid value %q: %v", text, errors.Unwrap(err))
		}
	}
	return src, nil
}

// configKeys are the keys a config file takes: up's flags but --config.
func configKeys(fs *flag.FlagSet) []string {
	var ks []string
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name != "config" {
			ks = append(ks, f.Name)
		}
	})
	return ks
}

// flagText is TOML value v as flag f's command-line text, if v has the
// type the flag takes: a boolean for a switch, a string for a string or
// a duration ("30s"), a number for a number.
func flagText(f *flag.Flag, v any) (string, error) {
	var want string
	g, _ := f.Value.(flag.Getter)
	var cur any
	if g != nil {
		cur = g.Get()
	}
	switch cur.(type) {
	case bool:
		if b, ok := v.(bool); ok {
			return strconv.FormatBool(b), nil
		}
		want = "a boolean (true or false)"
	case string:
		if s, ok := v.(string); ok {
			return s, nil
		}
		want = "a string (in double quotes)"
	case time.Duration:
		if s, ok := v.(string); ok {
			return s, nil
		}
		want = `a duration as a string, such as "30s"`
	case float64:
		switch n := v.(type) {
		case int64:
			return strconv.FormatInt(n, 10), nil
		case float64:
			return strconv.FormatFloat(n, 'g', -1, 64), nil
		}
		want = "a number"
	case int, int64, uint, uint64:
		if n, ok := v.(int64); ok {
			return strconv.FormatInt(n, 10), nil
		}
		want = "an integer"
	default:
		// A flag of its own type takes the text its flag takes.
		switch x := v.(type) {
		case string:
			return x, nil
		case bool:
			return strconv.FormatBool(x), nil
		case int64:
			return strconv.FormatInt(x, 10), nil
		case float64:
			return strconv.FormatFloat(x, 'g', -1, 64), nil
		}
		want = "a string, number or boolean"
	}
	return "", fmt.Errorf("want %s, as --%s takes, not %s", want, f.Name, tomlTypeName(v))
}

func tomlTypeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case bool:
		return "a boolean"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case time.Time:
		return "a date-time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("a %T", v)
}

// errLineProbe makes the TOML decoder report where a key is: its errors
// carry the key's position, which MetaData does not export.
var errLineProbe = errors.New("line probe")

type lineProbe struct{}

func (*lineProbe) UnmarshalText([]byte) error { return errLineProbe }

var lineRE = regexp.MustCompile(`\bline (\d+)\b`)

// keyLine is the line of the key whose value is prim, 0 if unknown.
func keyLine(md *toml.MetaData, prim toml.Primitive) int {
	err := md.PrimitiveDecode(prim, new(lineProbe))
	var pe toml.ParseError
	if errors.As(err, &pe) {
		return pe.Position.Line
	}
	// An array or a table is refused by the decoder's own type error,
	// which names the line in its text.
	if err != nil {
		if m := lineRE.FindStringSubmatch(err.Error()); m != nil {
			n, _ := strconv.Atoi(m[1])
			return n
		}
	}
	return 0
}

// readConfigFile reads path, refusing a file that someone other than its
// reader or root could have written: a config says where the node's keys
// and footage live and which peers file it trusts.
func readConfigFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("--config: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("--config %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return nil, fmt.Errorf("--config %s: writable by group or others (mode %04o); a config decides where the node's keys live: chmod go-w %s", path, perm, path)
	}
	if uid, ok := fileOwner(fi); ok && uid != 0 && uid != os.Getuid() {
		return nil, fmt.Errorf("--config %s: owned by uid %d, neither root nor the user running custos (uid %d); a config decides where the node's keys live: make root its owner", path, uid, os.Getuid())
	}
	// A directory others can write lets them replace the file, unless it
	// is sticky (as /tmp), where only the owner may.
	dir := filepath.Dir(path)
	if di, err := os.Stat(dir); err == nil && di.Mode().Perm()&0o022 != 0 && di.Mode()&os.ModeSticky == 0 {
		return nil, fmt.Errorf("--config %s: its directory %s is writable by group or others (mode %04o), so they could replace it: chmod go-w %s", path, dir, di.Mode().Perm(), dir)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxConfigSize+1))
	if err != nil {
		return nil, fmt.Errorf("--config %s: %w", path, err)
	}
	if len(data) > maxConfigSize {
		return nil, fmt.Errorf("--config %s: larger than %d bytes", path, maxConfigSize)
	}
	return data, nil
}

// upExamples are the values custos config example shows; dir and listen,
// which up requires, are set, the rest commented out. A flag without one
// shows its default.
var upExamples = map[string]string{
	"dir":     `"/var/lib/custos"`,
	"listen":  `"192.0.2.10:51820"`,
	"peers":   `"/etc/custos/peers.toml"`,
	"name":    `"dc-a"`,
	"uapi":    `"/var/lib/custos/wg.sock"`,
	"metrics": `"127.0.0.1:9477"`,
}

var upRequired = map[string]bool{"dir": true, "listen": true}

// writeConfigExample writes a config file with every key up takes, each
// with its flag's help, from up's own FlagSet.
func writeConfigExample(w io.Writer) {
	fs, _ := upFlagSet()
	fmt.Fprintf(w, "# custos up --config FILE: every key is one of custos up's flags, without\n"+
		"# the dashes; a flag given on the command line wins over the file. Keep the\n"+
		"# file owned by root and writable by nobody else. No secret goes here.\n"+
		"# Check it with: custos config check --config FILE\n")
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		_, text := flag.UnquoteUsage(f)
		if d := defaultText(f); d != "" {
			text += " (default " + d + ")"
		}
		fmt.Fprintf(w, "\n%s\n", wrap(text, 78, "# "))
		v, ok := upExamples[f.Name]
		if !ok {
			v = tomlDefault(f)
		}
		if upRequired[f.Name] {
			fmt.Fprintf(w, "%s = %s\n", f.Name, v)
		} else {
			fmt.Fprintf(w, "# %s = %s\n", f.Name, v)
		}
	})
}

// tomlDefault is flag f's default as a TOML value.
func tomlDefault(f *flag.Flag) string {
	if g, ok := f.Value.(flag.Getter); ok {
		switch v := g.Get().(type) {
		case bool:
			return strconv.FormatBool(v)
		case float64:
			return strconv.FormatFloat(v, 'g', -1, 64)
		case int, int64, uint, uint64:
			return fmt.Sprint(v)
		case time.Duration:
			return tomlString(durationText(v))
		}
	}
	return tomlString(f.DefValue)
}

// tomlString is s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteString(`\` + string(r))
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func runConfigExample(_ context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("config example", flag.ContinueOnError)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	writeConfigExample(stdout)
	return nil
}

// runConfigCheck reads a config as custos up would, and checks it as up
// does before it starts anything, without starting a node.
func runConfigCheck(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("config check", flag.ContinueOnError)
	path := fs.String("config", "", "the config `FILE` to check, as custos up --config reads it")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usageError{errors.New("--config is required")}
	}
	s, err := parseUp(ctx, []string{"--config", *path})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# %s is good: custos up --config %s runs with\n", *path, *path)
	s.fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "config" {
			return
		}
		where := "default"
		if line, ok := s.src.lines[f.Name]; ok {
			where = fmt.Sprintf("line %d", line)
		}
		v := tomlString(f.Value.String())
		if g, ok := f.Value.(flag.Getter); ok {
			switch g.Get().(type) {
			case bool, float64, int, int64, uint, uint64:
				v = f.Value.String()
			}
		}
		fmt.Fprintf(stdout, "%s = %s  # %s\n", f.Name, v, where)
	})
	if s.listen.String() != s.fs.Lookup("listen").Value.String() {
		fmt.Fprintf(stdout, "# listen resolves to %s, which the node tells its peers\n", s.listen)
	}
	return nil
}
