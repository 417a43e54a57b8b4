package main

import (
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// usage is the list of commands: custos, custos help.
func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: custos <command> [flags]\n\ncommands:\n")
	names := sortedKeys(commands)
	width := 0
	for _, n := range names {
		width = max(width, len(n))
	}
	for _, n := range names {
		fmt.Fprintf(w, "  %-*s %s\n", width, n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'custos help <command>' (or 'custos <command> -h') for what a command does and its flags.\n")
}

// printHelp is a command's help: its synopsis, what it does, every flag
// with its default, and its subcommands if it has any.
func printHelp(w io.Writer, name string, c command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: custos %s\n\n%s\n", c.usage, wrap(c.about, 78, ""))
	var flags []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { flags = append(flags, f) })
	if len(flags) > 0 {
		fmt.Fprintf(w, "\nflags:\n")
	}
	for _, f := range flags {
		arg, text := flag.UnquoteUsage(f)
		if arg != "" {
			if arg == strings.ToLower(arg) {
				arg = strings.ToUpper(arg) // the flag package's "string", "duration"
			}
			arg = " " + arg
		}
		if d := defaultText(f); d != "" {
			text += " (default " + d + ")"
		}
		fmt.Fprintf(w, "  --%s%s\n%s\n", f.Name, arg, wrap(text, 72, "      "))
	}
	if len(c.subs) > 0 {
		fmt.Fprintf(w, "\nsubcommands:\n")
		writeSubs(w, c)
		fmt.Fprintf(w, "Run 'custos help %s <subcommand>' for one of them.\n", name)
	}
}

// printGroupHelp is the help of a group of subcommands (custos camera -h).
func printGroupHelp(w io.Writer, name string, c command) {
	fmt.Fprintf(w, "usage: custos %s %s …\n\n%s\n\nsubcommands:\n", name, subNames(c, "|"), wrap(c.about, 78, ""))
	writeSubs(w, c)
	fmt.Fprintf(w, "Run 'custos help %s <subcommand>' for what one does and its flags.\n", name)
}

func writeSubs(w io.Writer, c command) {
	for _, s := range sortedKeys(c.subs) {
		fmt.Fprintf(w, "  custos %s\n      %s\n", c.subs[s].usage, c.subs[s].summary)
	}
}

func subNames(c command, sep string) string { return strings.Join(sortedKeys(c.subs), sep) }

// orList is "a", "a or b", "a, b or c".
func orList(ss []string) string {
	if len(ss) < 2 {
		return strings.Join(ss, "")
	}
	return strings.Join(ss[:len(ss)-1], ", ") + " or " + ss[len(ss)-1]
}

func sortedKeys(m map[string]command) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// defaultText is a flag's default as help shows it, or "" when the flag
// is off or empty by default.
func defaultText(f *flag.Flag) string {
	if g, ok := f.Value.(flag.Getter); ok {
		switch v := g.Get().(type) {
		case bool:
			return ""
		case time.Duration:
			if v == 0 {
				return ""
			}
			return durationText(v)
		case string:
			if v == "" {
				return ""
			}
			return fmt.Sprintf("%q", v)
		}
	}
	if f.DefValue == "0" {
		return ""
	}
	return f.DefValue
}

// durationText prints d without trailing zero units: 72h, 1h30m, 10s.
func durationText(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// wrap breaks s into lines of at most width columns, each starting with
// indent.
func wrap(s string, width int, indent string) string {
	var b strings.Builder
	line := indent
	for _, word := range strings.Fields(s) {
		if len(line) > len(indent) && len(line)+1+len(word) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	b.WriteString(line)
	return b.String()
}
