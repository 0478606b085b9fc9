package gitsync

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// Render writes the report for people: what arrived (or would), the summary line
// git prints, the paths to review, the sandbox's uncommitted files, and what
// happened to the host branch, with the commands to run when it is up to the user.
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
			fmt.Fprintf(w, "  %s %s\n", c.Hash, c.Subject)
		}
		fmt.Fprintf(w, " %s, %s(+), %s(-)\n", plural(r.FilesChanged, "file")+" changed",
			plural(r.Insertions, "insertion"), plural(r.Deletions, "deletion"))
	}
	if len(r.Review) > 0 {
		fmt.Fprintf(w, "\nREVIEW BEFORE RUNNING ANYTHING: these incoming paths run code on your host or in CI:\n")
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, p := range r.Review {
			fmt.Fprintf(tw, "  ! %s\t%s\t(branch %s)\n", p.Path, p.Reason, p.Branch)
		}
		tw.Flush()
	}
	var others []RefUpdate
	for _, u := range r.Refs {
		if u.Ref != r.Ref && (u.Commits > 0 || u.Forced) {
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
	if len(r.Uncommitted) > 0 {
		fmt.Fprintf(w, "\nUncommitted in the sandbox (not synced; commit them inside the sandbox):\n")
		for _, u := range r.Uncommitted {
			fmt.Fprintf(w, "  %s %s\n", u.Status, u.Path)
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
			fmt.Fprintf(w, "  %s\n", f)
		}
		fmt.Fprintf(w, "Nothing changed. Commit, stash or move them, then sync again, or run:\n  %s\n", strings.Join(m.Commands, "\n  "))
	case KindDetached:
		fmt.Fprintf(w, "HEAD is detached: nothing changed. The sandbox's commits are in %s. Run:\n  %s\n", m.Ref, strings.Join(m.Commands, "\n  "))
	default:
		fmt.Fprintf(w, "git refused the fast-forward of %s: %s\nThe sandbox's commits are in %s. Run:\n  %s\n", m.Branch, m.Detail, m.Ref, strings.Join(m.Commands, "\n  "))
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
