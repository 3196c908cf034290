//go:build unix

package serialcb

import (
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"
	"syscall"
)

// permissionHint says what to do about a device this process may not
// open, from its owner, group and mode: join the device's group (dialout on
// Debian, uucp on Arch, …) when the group may read and write it, log in
// again when the account is in the group but the process is not, or give
// the device a group when only its owner may open it.
func permissionHint(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return "check the device's owner, group and mode: `ls -l " + path + "`"
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "check the device's owner, group and mode: `ls -l " + path + "`"
	}
	mode := fi.Mode().Perm()
	owner, group := userName(st.Uid), groupName(st.Gid)
	desc := fmt.Sprintf("%s is %s:%s, mode %04o", path, owner, group, mode)
	groupRW := mode&0o060 == 0o060
	switch {
	case mode&0o006 == 0o006, groupRW && processInGroup(st.Gid), uint32(os.Geteuid()) == st.Uid && mode&0o600 == 0o600:
		return desc + ", which lets this process in: a security policy (SELinux, AppArmor) or the container's device rules refuse it; in Docker pass it with --device " + path
	case groupRW && st.Gid != 0:
		if accountInGroup(st.Gid) {
			return fmt.Sprintf("%s; your account is in group %s but this process is not (groups are read at login): log in again, or run `newgrp %s`; under systemd set SupplementaryGroups=%s",
				desc, group, group, group)
		}
		return fmt.Sprintf("%s: add the user to group %s: `sudo usermod -aG %s $USER`, then log in again; under systemd set SupplementaryGroups=%s; in Docker use --device %s --group-add %s",
			desc, group, group, group, path, group)
	default:
		return fmt.Sprintf("%s: only %s may open it. Run as %s, or give the device a group your user is in with a udev rule (MODE=\"0660\", GROUP=\"…\")",
			desc, owner, owner)
	}
}

func userName(uid uint32) string {
	if u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10)); err == nil {
		return u.Username
	}
	return strconv.FormatUint(uint64(uid), 10)
}

func groupName(gid uint32) string {
	if g, err := user.LookupGroupId(strconv.FormatUint(uint64(gid), 10)); err == nil {
		return g.Name
	}
	return strconv.FormatUint(uint64(gid), 10)
}

// processInGroup reports whether this process has gid, as its group or a
// supplementary one.
func processInGroup(gid uint32) bool {
	if uint32(os.Getegid()) == gid {
		return true
	}
	groups, _ := os.Getgroups()
	return slices.Contains(groups, int(gid))
}

// accountInGroup reports whether the user's account is in gid (per the
// group database), which a process started before it was added lacks.
func accountInGroup(gid uint32) bool {
	u, err := user.Current()
	if err != nil {
		return false
	}
	ids, err := u.GroupIds()
	return err == nil && slices.Contains(ids, strconv.FormatUint(uint64(gid), 10))
}
