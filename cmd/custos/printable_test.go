package main

import "testing"

// Policy text written before the policy refused control characters (or by
// a modified build) is printed inert: no escape sequence, bidi override or
// newline reaches the terminal from a list, and the columns stay.
func TestListRowsArePrintable(t *testing.T) {
	for in, want := range map[string]string{
		"g1\talice\tPurpose \x1b[2J\x1b[31mwiped": "g1\talice\tPurpose ?[2J?[31mwiped",
		"r1\tinventory \u202eevil":                "r1\tinventory ?evil",
		"two\nlines\r":                            "two?lines?",
		"bad utf-8 \xff":                          "bad utf-8 ?",
		"plain text, ünïcode":                     "plain text, ünïcode",
	} {
		if got := printable(in); got != want {
			t.Errorf("printable(%q) = %q, want %q", in, got, want)
		}
	}
}
