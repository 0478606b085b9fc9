// Package kvm decides whether hardware virtualisation is usable: /dev/kvm must
// open for reading and writing, as the hypervisor will open it. Existence
// alone is not enough (a missing group membership gives EACCES).
package kvm

import (
	"errors"
	"os"
)

// DefaultDevice is the KVM device node.
const DefaultDevice = "/dev/kvm"

// ErrUnavailable is the user guide's message, word for word.
var ErrUnavailable = errors.New("KVM is not available on this system")

// Device is the node to probe: $KEYSTONE_AGENT_KVM_DEVICE, else /dev/kvm.
func Device() string {
	if d := os.Getenv("KEYSTONE_AGENT_KVM_DEVICE"); d != "" {
		return d
	}
	return DefaultDevice
}

// Check opens dev read-write; the returned error wraps ErrUnavailable and
// says why (missing node, permission).
func Check(dev string) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return &Error{Device: dev, Err: err}
	}
	return f.Close()
}

// Error says why the device cannot be used.
type Error struct {
	Device string
	Err    error
}

func (e *Error) Error() string { return ErrUnavailable.Error() + ": " + e.Err.Error() }

func (e *Error) Unwrap() []error { return []error{ErrUnavailable, e.Err} }

// Hint tells the user what to do, as the guide's troubleshooting section does.
func (e *Error) Hint() string {
	if errors.Is(e.Err, os.ErrPermission) {
		return "add yourself to the group that owns " + e.Device + " (often `kvm`), then log in again"
	}
	return "load the module (`sudo modprobe kvm_intel` or `kvm_amd`) and check that VT-x/AMD-V is enabled in the firmware"
}
