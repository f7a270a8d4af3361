"""Every serving process applies the block lists and the spam score (`mailctl serve` with
server.processes = 2; connections told apart by the process that holds them), and the
counters of both reach `mailctl status`."""
from __future__ import annotations


from dnsserver import DNSServer
from helpers_dnsbl import BOB, block_list, delivered, listed, message
from helpers_process import smtp_sessions_in_two_processes
from helpers_server import make_root, serve_process, serve_status, wait_for_processes



def test_both_serving_processes_score_and_refuse(tmp_path):
    dns_server = DNSServer({**listed("six.bl.example", "127.0.0.31", "127.0.0.32"),
                            **listed("five.bl.example", "127.0.0.32")})
    try:
        root = make_root(tmp_path, accounts={BOB: "bob-password-1"}, settings={
            "server.processes": 2, "queue.offline": True, "queue.nameservers": [dns_server.address],
            "spam.whitelist_networks": [], "spam.reject_score": 10.0,
            "dnsbl.client_lists": [block_list("six.bl.example", 6.0), block_list("five.bl.example", 5.0)]})
        with serve_process(root) as proc:
            wait_for_processes(root, 2)
            top, port = proc.proc.pid, proc.ports["smtp"]
            for source, expected in (("127.0.0.31", 250), ("127.0.0.32", 550)):
                sessions = smtp_sessions_in_two_processes(port, top, source)
                for n, (pid, s) in enumerate(sessions.items()):
                    with s:
                        s.ehlo("client.example")
                        assert s.mail("carol@sender.example")[0] == 250
                        assert s.rcpt(BOB)[0] == 250
                        code, text = s.data(message(f"{source} {n}"))
                        assert code == expected, (pid, code, text)
            counters = serve_status(root)["counters"]
        assert counters["spam_marked"] == 2 and counters["spam_rejected"] == 2
    finally:
        dns_server.close()
    junk = delivered(root, "Junk")
    assert set(junk) == {"127.0.0.31 0", "127.0.0.31 1"} and not delivered(root)
    assert all(m["X-Spam-Score"] == "6.0" for m in junk.values())
