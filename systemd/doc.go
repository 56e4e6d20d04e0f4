// Package systemd holds fireops's systemd units (the *.service and *.timer
// files beside this file, installed by `make install`): a oneshot service
// and a timer per job (snapshot, rotate, verify, gpu check), and
// fireops-schedule.service for daemon mode; docs/scheduling.md says how to
// pick one of the two. Its test checks them with `systemd-analyze verify`
// and checks the hardening every unit must keep.
package systemd
