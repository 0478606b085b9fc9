package gitsync

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"unicode/utf8"
)

// Render writes the report for people: what arrived (or would), the summary line
// git prints, the paths to review, the sandbox's uncommitted files, and what
// happened to the host branch, with the commands to run when it is up to the user.
// Every text that comes from the sandbox (subjects, paths, git's messages about
// them) goes through Printable: the sandbox cannot write to the user's terminal.
func Render(w io.Writer, r *Report) {
	would := func(done, dry string) string {
		if r.DryRun {
			return dry
		}
		return done
	}
	if n := len(r.Commits); n > 0 {
		fmt.Fprintf(w, "%s %s from sandbox %q (%s):\n", would("Synced", "Would sync"), plural(n, "commit"), r.Sandbox, r.Ref)
		for _, c := range r.Commits {
			fmt.Fprintf(w, "  %s %s\n", c.Hash, Printable(c.Subject))
		}
		fmt.Fprintf(w, " %s, %s(+), %s(-)\n", plural(r.FilesChanged, "file")+" changed",
			plural(r.Insertions, "insertion"), plural(r.Deletions, "deletion"))
	}
	if len(r.Review) > 0 {
		fmt.Fprintf(w, "\nREVIEW BEFORE RUNNING ANYTHING: these incoming paths run code on your host or in CI:\n")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, p := range r.Review {
			fmt.Fprintf(tw, "  ! %s\t%s\t(branch %s)\n", Printable(p.Path), p.Reason, p.Branch)
		}
		tw.Flush()
	}
	var others, pruned []RefUpdate
	for _, u := range r.Refs {
		switch {
		case u.Deleted:
			pruned = append(pruned, u)
		case u.Ref != r.Ref && (u.Commits > 0 || u.Forced):
			others = append(others, u)
		}
	}
	if len(others) > 0 {
		fmt.Fprintf(w, "\nOther sandbox branches %s:\n", would("fetched", "to fetch"))
		for _, u := range others {
			note := plural(u.Commits, "new commit")
			if u.Forced {
				note += fmt.Sprintf("; rewritten in the sandbox, old tip %.7s kept in `git reflog %s`", u.Old, u.Ref)
			}
			fmt.Fprintf(w, "  %s (%s): git merge %s\n", u.Branch, note, u.Ref)
		}
	}
	if len(pruned) > 0 {
		fmt.Fprintf(w, "\nBranches deleted in the sandbox, their refs %s (the commits stay until git gc; keep one with `git branch <name> <commit>`):\n",
			would("pruned", "to prune"))
		for _, u := range pruned {
			fmt.Fprintf(w, "  %s (was %.7s)\n", u.Ref, u.Old)
		}
	}
	if len(r.Uncommitted) > 0 {
		fmt.Fprintf(w, "\nUncommitted in the sandbox (not synced; commit them inside the sandbox):\n")
		for _, u := range r.Uncommitted {
			fmt.Fprintf(w, "  %s %s\n", Printable(u.Status), Printable(u.Path))
		}
	}
	fmt.Fprintln(w)
	switch r.Result {
	case ResultFastForwarded:
		fmt.Fprintf(w, "%s %s to %.7s.\n", would("Fast-forwarded", "Would fast-forward"), r.Branch, r.To)
	case ResultFetched:
		fmt.Fprintf(w, "%s; %s.\n", would("Fetched the sandbox's branches", "Would fetch the sandbox's branches"), branchNote(r))
	case ResultUpToDate:
		fmt.Fprintln(w, "No changes to sync.")
	case ResultManual:
		renderManual(w, r)
	}
}

// RenderWarnings writes what went wrong after the sync itself succeeded, one
// line each, for stderr.
func RenderWarnings(w io.Writer, r *Report) {
	for _, m := range r.Warnings {
		fmt.Fprintf(w, "keystone: warning: %s\n", Printable(m))
	}
}

// Printable makes text from the sandbox safe to print to a terminal: control
// characters (C0, DEL, C1: cursor movement, OSC sequences such as a clipboard
// write), the bidirectional overrides that reorder what is shown, and invalid
// UTF-8 are written as Go escapes (\x1b, \u202e). Anything else is kept.
func Printable(s string) string {
	clean := true
	for _, r := range s {
		if !printableRune(r) {
			clean = false
			break
		}
	}
	if clean {
		return s
	}
	var b strings.Builder
	for i, r := range s {
		switch {
		case r == utf8.RuneError && !strings.HasPrefix(s[i:], "\uFFFD"):
			fmt.Fprintf(&b, "\\x%02x", s[i])
		case printableRune(r):
			b.WriteRune(r)
		case r < 0x80:
			fmt.Fprintf(&b, "\\x%02x", r)
		default:
			fmt.Fprintf(&b, "\\u%04x", r)
		}
	}
	return b.String()
}

func printableRune(r rune) bool {
	switch {
	case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError:
		return false
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069, r == 0x200e, r == 0x200f:
		return false
	}
	return true
}

func branchNote(r *Report) string {
	if r.Branch == "" {
		return "HEAD is detached and was left alone"
	}
	return fmt.Sprintf("%s is up to date", r.Branch)
}

func renderManual(w io.Writer, r *Report) {
	m := r.Manual
	switch m.Kind {
	case KindDiverged:
		fmt.Fprintf(w, "Your branch %s and the sandbox's have diverged: nothing on %s or in your working tree changed.\n", m.Branch, m.Branch)
		fmt.Fprintf(w, "The sandbox's commits are in %s. Merge them:\n  %s\nor rebase your commits onto them:\n  %s\n", m.Ref, m.Commands[0], m.Commands[1])
	case KindDirty:
		fmt.Fprintf(w, "Not fast-forwarding %s: it would overwrite uncommitted changes in:\n", m.Branch)
		for _, f := range m.Files {
			fmt.Fprintf(w, "  %s\n", Printable(f))
		}
		fmt.Fprintf(w, "Nothing changed. Commit, stash or move them, then sync again, or run:\n  %s\n", strings.Join(m.Commands, "\n  "))
	case KindDetached:
		fmt.Fprintf(w, "HEAD is detached: nothing changed. The sandbox's commits are in %s. Run:\n  %s\n", m.Ref, strings.Join(m.Commands, "\n  "))
	default:
		fmt.Fprintf(w, "git refused the fast-forward of %s: %s\nThe sandbox's commits are in %s. Run:\n  %s\n", m.Branch, Printable(m.Detail), m.Ref, strings.Join(m.Commands, "\n  "))
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
