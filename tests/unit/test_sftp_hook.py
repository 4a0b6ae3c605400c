"""FastSftpHook's connection handling without a server: auth options and host-key trust."""

from __future__ import annotations

import types

import pytest

from s3lander.hooks.sftp_fast import HostKeyError, SshTarget

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIO2okXNC3RaIj2XPGbAxSliR5b7CYQyTRG7TvxVEQMTa"


def conn(**extra):
    return types.SimpleNamespace(conn_id="p", host="10.0.0.5", port=2222, login="u", password=None, extra_dejson=extra)


def test_pinned_host_key_is_the_only_trusted_key():
    t = SshTarget.from_connection(conn(host_key=KEY))
    kh = t.known_hosts_arg()
    trusted = kh.match("10.0.0.5", "10.0.0.5", 2222)[0]
    import asyncssh

    assert {k.get_fingerprint() for k in trusted} == {asyncssh.import_public_key(KEY).get_fingerprint()}
    assert "pinned" in t.trust_source()


def test_verification_is_on_by_default_and_fails_without_known_hosts(tmp_path):
    t = SshTarget.from_connection(conn(known_hosts=str(tmp_path / "missing")))
    assert t.verify_host_key
    with pytest.raises(HostKeyError, match="connection 'p'.*known_hosts file .*missing does not exist"):
        t.known_hosts_arg()


def test_no_host_key_check_turns_verification_off_explicitly():
    t = SshTarget.from_connection(conn(no_host_key_check="true"))
    assert t.known_hosts_arg() is None


def test_compression_off_and_password_kept_out_of_repr():
    c = conn(host_key=KEY)
    c.password = "s3cret!"
    t = SshTarget.from_connection(c)
    opts = t.options()
    assert opts["compression_algs"] is None and opts["password"] == "s3cret!"
    assert "s3cret" not in repr(t)
    assert opts["encryption_algs"][0] == "aes128-gcm@openssh.com"
