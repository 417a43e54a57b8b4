package main

import (
	"context"
	"errors"
	"flag"
	"io"
	"regexp"
	"strings"
	"testing"
)

// leaves are every runnable command by its full name ("camera add"), the
// groups' own runs (audit) included.
func leaves() map[string]command {
	out := map[string]command{}
	for name, c := range commands {
		if c.run != nil {
			out[name] = c
		}
		for sub, s := range c.subs {
			out[name+" "+sub] = s
		}
	}
	return out
}

// flagsOf is the flag set a command parses, as it hands it back for -h.
func flagsOf(t *testing.T, name string, c command) *flag.FlagSet {
	t.Helper()
	err := c.run(context.Background(), []string{"-h"}, io.Discard)
	var h helpRequest
	if !errors.As(err, &h) {
		t.Fatalf("custos %s -h: %v, want a help request", name, err)
	}
	if h.fs.Name() != name {
		t.Errorf("custos %s parses its flags as %q", name, h.fs.Name())
	}
	return h.fs
}

var usageFlag = regexp.MustCompile(`--[a-z][a-z0-9-]*`)

// Every command and subcommand has help: custos help CMD and custos CMD -h
// print the same on stdout and exit 0: the synopsis, what it does, and
// every flag it defines with its default. The synopsis names every flag and
// no other.
func TestHelpNamesEveryFlag(t *testing.T) {
	for name, c := range leaves() {
		fs := flagsOf(t, name, c)
		path := strings.Fields(name)
		code, out, errOut := runCLI(append(path, "-h")...)
		code2, out2, errOut2 := runCLI(append([]string{"help"}, path...)...)
		if code != 0 || code2 != 0 || errOut != "" || errOut2 != "" || out != out2 {
			t.Errorf("custos %s -h: exit %d, stderr %q; custos help %s: exit %d, stderr %q; same stdout: %v", name, code, errOut, name, code2, errOut2, out == out2)
			continue
		}
		if !strings.HasPrefix(out, "usage: custos "+c.usage+"\n\n") || !strings.HasPrefix(c.usage, name) {
			t.Errorf("custos %s -h does not start with its synopsis:\n%s", name, out)
		}
		if len(c.about) < 40 || !strings.Contains(strings.Join(strings.Fields(out), " "), c.about) {
			t.Errorf("custos %s -h does not say what it does:\n%s", name, out)
		}
		inUsage := map[string]bool{}
		for _, f := range usageFlag.FindAllString(c.usage, -1) {
			inUsage[f[2:]] = true
			if fs.Lookup(f[2:]) == nil {
				t.Errorf("custos %s: the synopsis names %s, which it does not define", name, f)
			}
		}
		fs.VisitAll(func(f *flag.Flag) {
			if !inUsage[f.Name] {
				t.Errorf("custos %s: the synopsis lacks --%s", name, f.Name)
			}
			if !regexp.MustCompile(`(?m)^  --` + regexp.QuoteMeta(f.Name) + `( |$)`).MatchString(out) {
				t.Errorf("custos %s -h lacks --%s:\n%s", name, f.Name, out)
			}
			if d := defaultText(f); d != "" && !strings.Contains(strings.Join(strings.Fields(out), " "), "(default "+d+")") {
				t.Errorf("custos %s -h lacks --%s's default %s:\n%s", name, f.Name, d, out)
			}
		})
	}
}

// A group's help lists its subcommands; the top-level help lists every
// command; help of something unknown is a usage error.
func TestHelpGroupsAndList(t *testing.T) {
	for name, c := range commands {
		if len(c.subs) == 0 {
			continue
		}
		code, out, errOut := runCLI(name, "-h")
		code2, out2, _ := runCLI("help", name)
		if code != 0 || code2 != 0 || errOut != "" || out != out2 {
			t.Errorf("custos %s -h: exit %d, stderr %q; custos help %s: exit %d", name, code, errOut, name, code2)
		}
		for _, s := range c.subs {
			if !strings.Contains(out, "custos "+s.usage+"\n") {
				t.Errorf("custos %s -h lacks %q:\n%s", name, s.usage, out)
			}
		}
		if c.run == nil {
			if code, _, errOut := runCLI(name); code != 2 || !strings.Contains(errOut, "which one?") {
				t.Errorf("custos %s alone: exit %d %q", name, code, errOut)
			}
			if code, _, errOut := runCLI(name, "frob"); code != 2 || !strings.Contains(errOut, `unknown subcommand "frob"`) {
				t.Errorf("custos %s frob: exit %d %q", name, code, errOut)
			}
		}
	}
	code, out, _ := runCLI("help")
	for name, c := range commands {
		if code != 0 || !strings.Contains(out, "  "+name+" ") || !strings.Contains(out, c.summary) {
			t.Errorf("custos help (exit %d) lacks %s:\n%s", code, name, out)
		}
	}
	if code, _, errOut := runCLI("help", "frob"); code != 2 || !strings.Contains(errOut, `unknown command "frob"`) {
		t.Errorf("custos help frob: exit %d %q", code, errOut)
	}
	// A usage error names what was wrong, then the synopsis.
	if code, _, errOut := runCLI("camera", "remove", "--dir", "d", "--as", "k"); code != 2 ||
		!strings.Contains(errOut, "custos camera remove: which camera?") || !strings.Contains(errOut, "usage: custos camera remove SITE/NAME") {
		t.Errorf("camera remove without a camera: exit %d %q", code, errOut)
	}
}
