package sandbox_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/keystone-agent/keystone/internal/gitsync"
	"github.com/keystone-agent/keystone/internal/registry"
	"github.com/keystone-agent/keystone/internal/runner"
	"github.com/keystone-agent/keystone/internal/sandbox"
	"github.com/keystone-agent/keystone/internal/sshconn"
	"github.com/keystone-agent/keystone/internal/statedir"
	"github.com/keystone-agent/keystone/internal/testenv"
	"github.com/keystone-agent/keystone/internal/testenv/smallfs"
)

// issue 14.2: with the state directory's file system full, a failed start
// leaves the registry as it was, and stop and destroy of a running sandbox
// still work.
func TestFullDisk(t *testing.T) {
	guest := testenv.Guest(t)
	env := testenv.NewOn(t, t.TempDir(), filepath.Join(smallfs.Mount(t, 32<<20), "agent"))
	sb := env.Start(t, "full")
	before, err := os.ReadFile(env.Registry.Path())
	if err != nil {
		t.Fatal(err)
	}
	smallfs.Fill(t, filepath.Dir(env.Root.Sandbox("x").Root()))

	_, err = env.Env.Start(context.Background(), sandbox.Spec{Project: env.Repo(t, "other"),
		MemoryMB: sandbox.MinMemoryMB, VCPUs: 1, Network: "user", SyncMode: "manual", Runner: guest})
	if err == nil {
		t.Fatal("start on a full disk succeeded")
	}
	t.Logf("start on a full disk: %v", err)
	if after, _ := os.ReadFile(env.Registry.Path()); !bytes.Equal(before, after) {
		t.Fatalf("the registry changed:\n%s\nwas:\n%s", after, before)
	}
	if _, err := os.Stat(env.Root.Sandbox("other").Root()); !os.IsNotExist(err) {
		t.Errorf("the failed start left its directory: %v", err)
	}
	if st := env.Inspect(sb); st.State != sandbox.Running {
		t.Fatalf("the running sandbox is %s (%s)", st.State, st.Reason)
	}

	how, err := env.Stop(sb)
	if err != nil {
		t.Fatalf("stop on a full disk: %v", err)
	}
	t.Logf("stop on a full disk: %s", how)
	if pid, err := runner.ReadPID(sb.Dir.State()); pid != 0 || err != nil {
		t.Fatalf("pid file after stop: %d, %v", pid, err)
	}
	if err := env.Destroy(sb); err != nil {
		t.Fatalf("destroy on a full disk: %v", err)
	}
	if _, err := os.Stat(sb.Dir.Root()); !os.IsNotExist(err) {
		t.Errorf("destroy left the sandbox directory: %v", err)
	}
	if _, err := env.Registry.Get("full"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("destroy left the registry entry: %v", err)
	}
}

// TestMain lets a test run Start in a child process that it can kill.
func TestMain(m *testing.M) {
	if spec := os.Getenv("KEYSTONE_TEST_START_CHILD"); spec != "" {
		os.Exit(startChild(spec))
	}
	if spec := os.Getenv("KEYSTONE_TEST_DESTROY_CHILD"); spec != "" {
		os.Exit(destroyChild(spec))
	}
	os.Exit(m.Run())
}

// startChild runs one Start: "stateRoot\nproject\nrunner".
func startChild(spec string) int {
	f := strings.Split(spec, "\n")
	root := statedir.Dir(f[0])
	env := &sandbox.Env{Root: root, Registry: registry.New(root.Registry(), root.Lock()), Progress: os.Stderr}
	_, err := env.Start(context.Background(), sandbox.Spec{Project: f[1], MemoryMB: sandbox.MinMemoryMB, VCPUs: 1,
		Network: "user", SyncMode: "manual", Runner: f[2]})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// bigRepo is a project whose clone takes long enough to be killed midway.
func bigRepo(t *testing.T, env *testenv.Env, name string, files int) string {
	dir := env.Repo(t, name)
	blob := strings.Repeat("some source line\n", 256)
	for i := 0; i < files; i++ {
		p := filepath.Join(dir, fmt.Sprintf("src/d%02d/f%04d.txt", i%50, i))
		os.MkdirAll(filepath.Dir(p), 0o755)
		os.WriteFile(p, []byte(fmt.Sprintf("%d\n%s", i, blob)), 0o644)
	}
	testenv.Git(t, dir, "add", "-A")
	testenv.Git(t, dir, "commit", "-q", "-m", "many files")
	return dir
}

// killDuringClone runs a start of project in a child process and kills it
// with SIGKILL while the first clone is being written.
func killDuringClone(t *testing.T, env *testenv.Env, name, project, runnerDir string) {
	t.Helper()
	self, _ := os.Executable()
	cmd := exec.Command(self, "-test.run=^$")
	cmd.Env = append(os.Environ(), "KEYSTONE_TEST_START_CHILD="+string(env.Root)+"\n"+project+"\n"+runnerDir)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	partial := filepath.Join(env.Root.Sandbox(name).WorkspacePartial(), ".git")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	for {
		select {
		case err := <-done:
			t.Fatalf("the start ended before its clone was seen: %v\n%s", err, stderr.String())
		case <-time.After(time.Millisecond):
		}
		if _, err := os.Stat(partial); err == nil {
			break
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	<-done
	if _, err := os.Stat(env.Root.Sandbox(name).Workspace()); err == nil {
		t.Skip("the clone completed before the kill; nothing to test on this run")
	}
}

// issue 14.7: a start killed during the first clone leaves a sandbox that
// list shows and destroy removes completely.
func TestStartKilledDuringCloneIsListedAndDestroyed(t *testing.T) {
	env := testenv.New(t)
	project := bigRepo(t, env, "killed", 3000)
	killDuringClone(t, env, "killed", project, fakeRunner(t, "exit 1"))
	all, err := env.List()
	if err != nil || len(all) != 1 || all[0].Name != "killed" {
		t.Fatalf("list after the kill: %v, %v; want the killed sandbox", all, err)
	}
	if st := env.Inspect(all[0]); st.State != sandbox.Broken {
		t.Errorf("state after the kill: %s (%s); want %s", st.State, st.Reason, sandbox.Broken)
	}
	if err := env.Destroy(all[0]); err != nil {
		t.Fatalf("destroy after the kill: %v", err)
	}
	if ents, _ := os.ReadDir(filepath.Dir(env.Root.Sandbox("killed").Root())); len(ents) != 0 {
		t.Errorf("destroy left %v in sandboxes/", ents)
	}
	if all, _ := env.List(); len(all) != 0 {
		t.Errorf("list after destroy: %v", all)
	}
}

// issue 14.7: the next start after a kill during the first clone boots on a
// complete workspace (all files, HEAD checked out), never an empty one.
func TestStartAfterAKilledCloneBootsTheWholeProject(t *testing.T) {
	env := testenv.New(t)
	guest := testenv.Guest(t)
	project := bigRepo(t, env, "resumed", 3000)
	killDuringClone(t, env, "resumed", project, guest)
	sb, err := env.Env.Start(context.Background(), sandbox.Spec{Project: project, MemoryMB: sandbox.MinMemoryMB, VCPUs: 1,
		Network: "user", SyncMode: "manual", Runner: guest})
	if err != nil {
		t.Fatalf("start after the kill: %v", err)
	}
	if got := execOut(t, sb, "sh", "-c", "find src -type f | wc -l; git rev-parse HEAD"); !strings.HasPrefix(got, "3000\n") ||
		strings.TrimSpace(strings.SplitN(got, "\n", 2)[1]) != testenv.Git(t, project, "rev-parse", "HEAD") {
		t.Fatalf("workspace after the kill and a new start: %q; want 3000 files at the project's HEAD", got)
	}
	if _, err := os.Stat(sb.Dir.WorkspacePartial()); !os.IsNotExist(err) {
		t.Errorf("the interrupted clone is still there: %v", err)
	}
}

// fakeRunner is a runner directory whose microvm-run runs script; it needs no KVM.
func fakeRunner(t *testing.T, script string) string {
	dir := t.TempDir()
	os.MkdirAll(dir+"/bin", 0o755)
	os.MkdirAll(dir+"/share/keystone", 0o755)
	os.WriteFile(dir+"/share/keystone/runner.json", []byte(`{"accel":"auto"}`), 0o644)
	os.WriteFile(dir+"/bin/microvm-run", []byte("#!/bin/sh\n"+script+"\n"), 0o755)
	return dir
}

// passwordLogin tries to log in as sandbox with the guide's fallback
// password. A connection dropped before the handshake (dropbear under load
// still counting earlier probes) is tried again, as sandbox.Dial does.
func passwordLogin(sb *sandbox.Sandbox) error {
	hostKey, err := sshconn.ParseHostKey([]byte(sb.HostKey))
	if err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		err := dialPassword(sb, hostKey)
		if !errors.Is(err, io.EOF) || attempt == 5 {
			return err
		}
		time.Sleep(time.Duration(attempt) * 500 * time.Millisecond)
	}
}

func dialPassword(sb *sandbox.Sandbox, hostKey ssh.PublicKey) error {
	c, err := ssh.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(sb.SSHPort)), &ssh.ClientConfig{
		User:            sandbox.GuestUser,
		Auth:            []ssh.AuthMethod{ssh.Password("sandbox")},
		HostKeyCallback: ssh.FixedHostKey(hostKey),
		// dropbear fails the RSA negotiation with x/crypto; the pinned key is ed25519
		HostKeyAlgorithms: []string{ssh.KeyAlgoED25519},
		Timeout:           30 * time.Second,
	})
	if err != nil {
		return err
	}
	return c.Close()
}

// issue 14.4: without a key in ~/.ssh the guest takes the password, and
// status says so; once the user has a key, the next start turns it off.
func TestPasswordLoginIsShownAndEndsWithAKey(t *testing.T) {
	env := testenv.New(t)
	sb := env.Start(t, "pw")
	if st := env.Inspect(sb); !st.PasswordLogin {
		t.Fatalf("status without a user key: passwordLogin false")
	}
	if err := passwordLogin(sb); err != nil {
		t.Fatalf("password login without a user key: %v", err)
	}
	if _, err := env.Stop(sb); err != nil {
		t.Fatal(err)
	}
	_, pub, err := sshconn.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(env.Home, ".ssh"), 0o700)
	if err := os.WriteFile(filepath.Join(env.Home, ".ssh", "id_ed25519.pub"), pub, 0o644); err != nil {
		t.Fatal(err)
	}
	again, err := env.Env.Start(context.Background(), sandbox.Spec{Project: sb.ProjectPath, MemoryMB: sandbox.MinMemoryMB, VCPUs: 1, Network: "user", SyncMode: "manual"})
	if err != nil {
		t.Fatal(err)
	}
	if st := env.Inspect(again); st.PasswordLogin {
		t.Errorf("status with a user key: passwordLogin true")
	}
	if err := passwordLogin(again); err == nil {
		t.Fatal("password login still works after a key was created and the sandbox restarted")
	} else if !strings.Contains(err.Error(), "unable to authenticate") {
		t.Errorf("password login failed, but not for authentication: %v", err)
	}
	execOut(t, again, "true")
}

// destroyChild runs one Destroy: "stateRoot\nname".
func destroyChild(spec string) int {
	root, name, _ := strings.Cut(spec, "\n")
	d := statedir.Dir(root)
	env := &sandbox.Env{Root: d, Registry: registry.New(d.Registry(), d.Lock()), Progress: os.Stderr}
	sb, err := env.Get(name)
	if err == nil {
		err = env.Destroy(sb)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// stoppedSandbox is what start and stop leave of a sandbox of project: its
// registry entry, its complete workspace and its state directory; no VM.
func stoppedSandbox(t *testing.T, env *testenv.Env, name, project string) *sandbox.Sandbox {
	t.Helper()
	d := env.Root.Sandbox(name)
	if err := gitsync.Clone(context.Background(), project, d.Workspace()); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(d.State(), 0o700)
	err := env.Registry.Update(func(tx *registry.Tx) error {
		tx.Put(registry.Entry{Name: name, ProjectPath: project, MemoryMB: sandbox.MinMemoryMB, VCPUs: 1,
			Network: "user", SyncMode: "manual", SSHPort: 2299, Created: time.Now().UTC()})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sb, err := env.Get(name)
	if err != nil {
		t.Fatal(err)
	}
	return sb
}

// A destroy killed with SIGKILL while it removes the sandbox's files (a
// large workspace takes a while; Ctrl-C ends it the same way) leaves the
// sandbox whole or gone: never a workspace with part of its files, which
// the next start would boot on as if it were the agent's work.
func TestDestroyKilledLeavesTheSandboxWholeOrGone(t *testing.T) {
	env := testenv.New(t)
	project := bigRepo(t, env, "doomed", 3000)
	self, _ := os.Executable()
	for round := 0; round < 5; round++ {
		sb := stoppedSandbox(t, env, "doomed", project)
		files := filepath.Join(sb.Dir.Workspace(), "src")
		cmd := exec.Command(self, "-test.run=^$")
		cmd.Env = append(os.Environ(), "KEYSTONE_TEST_DESTROY_CHILD="+string(env.Root)+"\n"+sb.Name)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
	wait: // until the destroy has begun removing files, or is over
		for count(t, files) == 3000 {
			select {
			case <-done:
				break wait
			case <-time.After(100 * time.Microsecond):
			}
		}
		cmd.Process.Signal(syscall.SIGKILL)
		<-done
		if _, err := os.Stat(sb.Dir.Root()); err == nil {
			if n := count(t, files); n != 3000 {
				t.Fatalf("round %d: the killed destroy left the sandbox with %d of its 3000 files", round, n)
			}
			if _, err := env.Registry.Get(sb.Name); err != nil {
				t.Fatalf("round %d: the sandbox's directory is whole but its entry is gone: %v", round, err)
			}
		}
		all, err := env.List()
		if err != nil {
			t.Fatal(err)
		}
		for _, left := range all {
			if err := env.Destroy(left); err != nil {
				t.Fatalf("round %d: destroy after the kill: %v", round, err)
			}
		}
		if ents, _ := os.ReadDir(filepath.Dir(sb.Dir.Root())); len(ents) != 0 {
			t.Fatalf("round %d: a destroy after the kill left %v in sandboxes/", round, ents)
		}
	}
}

// count is the number of regular files under dir (0 when it is gone).
func count(t *testing.T, dir string) int {
	n := 0
	filepath.WalkDir(dir, func(_ string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			n++
		}
		return nil
	})
	return n
}

// A start whose disk fills up during the first clone (the registry entry
// written, the workspace not) fails with the reason and leaves the state
// directory as it was: the entry removed, no directory, nothing set aside.
func TestStartOnADiskThatFillsDuringTheClone(t *testing.T) {
	fs := smallfs.Mount(t, 32<<20)
	env := testenv.NewOn(t, t.TempDir(), filepath.Join(fs, "agent"))
	project := bigRepo(t, env, "filling", 3000) // 12 MB of files
	if err := env.Registry.Update(func(*registry.Tx) error { return nil }); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(env.Registry.Path())
	if err := os.WriteFile(filepath.Join(fs, "filler"), make([]byte, 26<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := env.Env.Start(context.Background(), sandbox.Spec{Project: project, MemoryMB: sandbox.MinMemoryMB, VCPUs: 1,
		Network: "user", SyncMode: "manual", Runner: fakeRunner(t, "exit 1")})
	if err == nil || !strings.Contains(err.Error(), "no space left") {
		t.Fatalf("start on a disk that fills during the clone: %v; want the full disk named", err)
	}
	t.Logf("start: %v", err)
	if after, _ := os.ReadFile(env.Registry.Path()); !bytes.Equal(before, after) {
		t.Errorf("the registry changed:\n%s\nwas:\n%s", after, before)
	}
	if ents, _ := os.ReadDir(filepath.Join(fs, "agent", "sandboxes")); len(ents) != 0 {
		t.Errorf("the failed start left %v in sandboxes/", ents)
	}
}

// While a start of a sandbox boots, a second start, a stop and a destroy of
// it are refused at once (busy), changing nothing; when the boot then fails,
// the start removes everything it made, its runner included.
func TestCommandsDuringAStartAreRefused(t *testing.T) {
	env := testenv.New(t)
	env.Timeouts.Ready = 5 * time.Second
	project := env.Repo(t, "contested")
	spec := sandbox.Spec{Project: project, MemoryMB: sandbox.MinMemoryMB, VCPUs: 1, Network: "user",
		SyncMode: "manual", Runner: fakeRunner(t, "exec sleep 60")} // never answers SSH
	first := make(chan error, 1)
	go func() { _, err := env.Env.Start(context.Background(), spec); first <- err }()
	state := env.Root.Sandbox("contested").State()
	var pid int
	for pid == 0 {
		select {
		case err := <-first:
			t.Fatalf("the start ended before its runner was seen: %v", err)
		case <-time.After(10 * time.Millisecond):
		}
		pid, _ = runner.ReadPID(state)
	}
	before, _ := os.ReadFile(env.Registry.Path())
	if _, err := env.Env.Start(context.Background(), spec); !errors.Is(err, sandbox.ErrBusy) {
		t.Errorf("a second start during the first: %v; want busy", err)
	}
	sb, err := env.Get("contested")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := env.Stop(sb); !errors.Is(err, sandbox.ErrBusy) {
		t.Errorf("stop during the start: %v; want busy", err)
	}
	if err := env.Destroy(sb); !errors.Is(err, sandbox.ErrBusy) {
		t.Errorf("destroy during the start: %v; want busy", err)
	}
	if after, _ := os.ReadFile(env.Registry.Path()); !bytes.Equal(before, after) {
		t.Errorf("the refused commands changed the registry")
	}
	if err := <-first; err == nil {
		t.Fatal("a start whose VM never answered succeeded")
	}
	if runner.Inspect(pid, state) != runner.Gone && syscall.Kill(pid, 0) == nil {
		t.Errorf("the failed start left its runner (pid %d) running", pid)
	}
	if ents, _ := os.ReadDir(filepath.Dir(sb.Dir.Root())); len(ents) != 0 {
		t.Errorf("the failed start left %v in sandboxes/", ents)
	}
	if all, _ := env.List(); len(all) != 0 {
		t.Errorf("list after the failed start: %d sandboxes", len(all))
	}
}
