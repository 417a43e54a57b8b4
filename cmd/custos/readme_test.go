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

// Every `custos …` line in the README's shell blocks (the Quick start, Running
// in production, …) runs a command that exists, with flags it defines and
// values they take: a renamed flag or command fails here, not on an
// operator's machine.
func TestREADMECommands(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	inBlock := false
	var pending string
	for n, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "```sh"):
			inBlock = true
			continue
		case strings.HasPrefix(line, "```"):
			inBlock = false
			continue
		case !inBlock:
			continue
		}
		if strings.HasSuffix(line, `\`) {
			pending += strings.TrimSuffix(line, `\`) + " "
			continue
		}
		line, pending = pending+line, ""
		words := shellWords(line)
		if len(words) >= 3 && words[0] == "sudo" && words[1] == "-u" {
			words = words[3:]
		}
		if len(words) == 0 || words[0] != "custos" {
			continue
		}
		args := words[1:]
		for i, w := range args {
			if w == "|" || w == ">" || w == "&" || w == "&&" || w == ";" || strings.HasPrefix(w, "#") {
				args = args[:i]
				break
			}
		}
		name := commandOf(strings.Join(args, " "))
		c, ok := leaves()[name]
		if !ok {
			t.Errorf("README.md:%d: custos %s: no such command", n+1, strings.Join(args, " "))
			continue
		}
		fs := flagsOf(t, name, c)
		_, rest := positional(args[len(strings.Fields(name)):], 3)
		if err := fs.Parse(rest); err != nil || fs.NArg() > 0 {
			t.Errorf("README.md:%d: custos %s: %v (left %q)", n+1, strings.Join(args, " "), err, fs.Args())
		}
		checked++
	}
	t.Logf("%d custos lines checked", checked)
	if checked < 40 {
		t.Errorf("only %d custos lines checked in the README's shell blocks", checked)
	}
}

// shellWords splits a shell line into words: quotes ('…', "…") and $(…)
// keep their spaces; a # starting a word begins a comment.
func shellWords(s string) []string {
	var words []string
	var w strings.Builder
	inWord := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\'' || c == '"':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				j = len(s) - i - 1
			}
			w.WriteString(s[i+1 : i+1+j])
			i += j + 1
			inWord = true
		case c == '$' && i+1 < len(s) && s[i+1] == '(':
			j := strings.IndexByte(s[i:], ')')
			if j < 0 {
				j = len(s) - i - 1
			}
			w.WriteString(s[i : i+j+1])
			i += j
			inWord = true
		case c == ' ' || c == '\t':
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if inWord {
		words = append(words, w.String())
	}
	return words
}
