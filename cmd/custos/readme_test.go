package main

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// The README's CLI reference has one row per command, whose first cell is
// exactly the command's synopsis (which TestHelpNamesEveryFlag checks
// against the flags it defines): a command or flag missing from the
// README, or documented there but not defined, fails here.
func TestREADMECLIReference(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n## CLI reference\n")
	if !ok {
		t.Fatal("README.md has no CLI reference section")
	}
	if i := strings.Index(section, "\n## "); i >= 0 {
		section = section[:i]
	}
	row := regexp.MustCompile("^\\| `custos ((?:[^`])+)` \\| ")
	documented := map[string]string{}
	for line := range strings.Lines(section) {
		if !strings.HasPrefix(line, "| `custos") {
			continue
		}
		m := row.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("README row does not start with one `custos …` synopsis: %s", line)
			continue
		}
		usage := strings.ReplaceAll(m[1], `\|`, "|")
		name := commandOf(usage)
		if _, ok := leaves()[name]; !ok {
			t.Errorf("README documents %q, which is no command", usage)
			continue
		}
		if documented[name] != "" {
			t.Errorf("README documents custos %s twice", name)
		}
		documented[name] = usage
	}
	for name, c := range leaves() {
		switch documented[name] {
		case "":
			t.Errorf("README's CLI reference lacks custos %s (want a row `custos %s`)", name, c.usage)
		case c.usage:
		default:
			t.Errorf("README's CLI reference has\n  custos %s\nbut the command's flags are\n  custos %s", documented[name], c.usage)
		}
	}
}

// commandOf is the command a synopsis runs: "camera add" for
// "camera add --site S …".
func commandOf(usage string) string {
	w := strings.Fields(usage)
	if len(w) == 0 {
		return ""
	}
	if len(w) > 1 {
		if _, ok := commands[w[0]].subs[w[1]]; ok {
			return w[0] + " " + w[1]
		}
	}
	return w[0]
}
