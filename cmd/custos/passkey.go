package main

// Passkeys in the policy (policy/passkey.go): passkey require sets the roles
// that approve with one, passkey list shows who has which. Enrolment is the
// console's: the browser's registration ceremony makes the passkey.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/custos-cctv/custos/policy"
)

func runPasskeyRequire(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("passkey require", flag.ContinueOnError)
	dir, as := commonFlags(fs)
	rolesFlag := fs.String("roles", "", "the `ROLES` that approve with a passkey, comma-separated: approver, admin; none lifts the requirement")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := needCommon(*dir, *as); err != nil {
		return err
	}
	roles, err := parseRoles(*rolesFlag)
	if err != nil {
		return usageError{err}
	}
	return signAndSubmit(ctx, *dir, *as, &policy.Command{Kind: policy.KindRequirePasskeys,
		PasskeyRequirement: &policy.PasskeyRequirement{Roles: roles}}, stdout)
}

// parseRoles reads --roles: admin and approver, comma-separated, or none.
func parseRoles(s string) ([]policy.UserRole, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "":
		return nil, errors.New("--roles is required: approver, admin or both (approver,admin), or none to lift the requirement")
	case "none":
		return nil, nil
	}
	var roles []policy.UserRole
	for _, r := range strings.Split(s, ",") {
		role := policy.UserRole(strings.TrimSpace(r))
		if role != policy.UserAdmin && role != policy.UserApprover {
			return nil, fmt.Errorf("--roles: %q: only roles approver and admin approve, so only they can be required to use a passkey", r)
		}
		roles = append(roles, role)
	}
	return roles, nil
}

// passkeyRow is one user's passkeys as passkey list --json prints them.
type passkeyRow struct {
	User     string           `json:"user"`
	Role     policy.UserRole  `json:"role"`
	Required bool             `json:"required"` // their role approves with a passkey
	Passkeys []policy.Passkey `json:"passkeys"`
}

func runPasskeyList(ctx context.Context, args []string, stdout io.Writer) error {
	st, asJSON, err := localPolicy(ctx, "passkey list", args)
	if err != nil {
		return err
	}
	var rows []passkeyRow
	for _, u := range sortedValues(st.Users) {
		if u.Revoked || (len(u.Passkeys) == 0 && u.Role != policy.UserAdmin && u.Role != policy.UserApprover) {
			continue
		}
		rows = append(rows, passkeyRow{User: u.Name, Role: u.Role, Required: st.PasskeyRequired(u.Role), Passkeys: u.Passkeys})
	}
	if asJSON {
		return json.NewEncoder(stdout).Encode(struct {
			Required []policy.UserRole `json:"required"`
			Users    []passkeyRow      `json:"users"`
		}{st.PasskeyRoles, rows})
	}
	required := "nobody (custos passkey require --roles approver,admin)"
	if len(st.PasskeyRoles) > 0 {
		var rs []string
		for _, r := range st.PasskeyRoles {
			rs = append(rs, string(r))
		}
		required = "roles " + strings.Join(rs, ", ")
	}
	fmt.Fprintf(stdout, "approvals with a passkey are required of %s\n", required)
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "USER\tROLE\tPASSKEY\tALG\tRP ID\tADDED\tBY\tCOUNTER\tID")
	for _, r := range rows {
		if len(r.Passkeys) == 0 {
			note := "none"
			if r.Required {
				note = "none: cannot approve until one is enrolled (custos console)"
			}
			fmt.Fprintln(tw, printable(fmt.Sprintf("%s\t%s\t%s\t\t\t\t\t\t", r.User, r.Role, note)))
			continue
		}
		for _, p := range r.Passkeys {
			alg := "ES256"
			if p.Alg == policy.AlgEdDSA {
				alg = "EdDSA"
			}
			id := policy.PasskeyIDText(p.ID)
			if len(id) > 22 {
				id = id[:21] + "…"
			}
			fmt.Fprintln(tw, printable(fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s", r.User, r.Role, p.Name, alg, p.RPID, stamp(p.Added), p.AddedBy, p.Counter, id)))
		}
	}
	return tw.Flush()
}
