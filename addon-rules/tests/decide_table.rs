//! Table tests of `Policy::decide`: one row per case, named for what it
//! proves, covering every policy reason code and every SPEC §3.1-§3.7 and §7
//! bullet that is policy. The routes file is testdata/table.yaml.

mod common;

use std::collections::HashSet;

use addon_rules::{BodyHint, Decision, Policy, Reason};
use common::{Req, Via, policy};
use http::Version;

use Reason::*;
use Via::*;

enum Expect {
    /// Allowed: destination authority, path_and_query sent upstream, route index.
    Allow(&'static str, &'static str, Option<usize>),
    Refuse(Reason, u16),
}
use Expect::*;

struct Row {
    name: &'static str,
    req: Req,
    expect: Expect,
}

fn row(name: &'static str, req: Req, expect: Expect) -> Row {
    Row { name, req, expect }
}

fn get(via: Via, target: &str) -> Req {
    Req::new(via, "GET", target)
}

const GH: Via = Tls("api.github.com:443");
const GH_ISSUES: &str = "/repos/acme/widget/issues";

fn rows() -> Vec<Row> {
    vec![
        // ---- allowed basics
        row(
            "allow_listed_path_in_tls_tunnel",
            get(GH, GH_ISSUES),
            Allow("api.github.com:443", GH_ISSUES, Some(0)),
        ),
        row(
            "allow_below_prefix_on_segment_boundary",
            get(GH, "/repos/acme/widget/issues/7"),
            Allow("api.github.com:443", "/repos/acme/widget/issues/7", Some(0)),
        ),
        row(
            "allow_trailing_slash_of_prefix",
            get(GH, "/repos/acme/widget/issues/"),
            Allow("api.github.com:443", "/repos/acme/widget/issues/", Some(0)),
        ),
        row(
            "allow_query_kept_exactly",
            get(GH, "/repos/acme/widget/issues?state=open&x=%2F%zz"),
            Allow(
                "api.github.com:443",
                "/repos/acme/widget/issues?state=open&x=%2F%zz",
                Some(0),
            ),
        ),
        row(
            "allow_double_star_zero_segments",
            get(GH, "/repos/acme/widget/pulls"),
            Allow("api.github.com:443", "/repos/acme/widget/pulls", Some(0)),
        ),
        row(
            "allow_double_star_many_segments",
            get(GH, "/repos/acme/widget/pulls/1/files"),
            Allow(
                "api.github.com:443",
                "/repos/acme/widget/pulls/1/files",
                Some(0),
            ),
        ),
        row(
            "allow_single_star_one_segment",
            get(GH, "/users/bob/repos"),
            Allow("api.github.com:443", "/users/bob/repos", Some(0)),
        ),
        row(
            "allow_regex_whole_path",
            get(GH, "/v3/meta"),
            Allow("api.github.com:443", "/v3/meta", Some(0)),
        ),
        row(
            "allow_post_listed_method",
            Req::new(GH, "POST", GH_ISSUES)
                .header("content-length", "2")
                .body(BodyHint::NonEmpty),
            Allow("api.github.com:443", GH_ISSUES, Some(0)),
        ),
        row(
            "allow_route_without_lists_any_path",
            get(Tls("github.com:443"), "/any/thing"),
            Allow("github.com:443", "/any/thing", Some(7)),
        ),
        row(
            "allow_connect_port_is_destination",
            get(Tls("github.com:8443"), "/x"),
            Allow("github.com:8443", "/x", Some(7)),
        ),
        // ---- §3.1 target
        row(
            "s31_fragment_in_origin_form_refused",
            get(GH, "/repos/acme/widget/issues#x"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s31_fragment_in_absolute_form_refused",
            get(Plain, "http://plain.example.com/a#frag"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s31_userinfo_refused",
            get(Plain, "http://user:pw@plain.example.com/"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s31_port_zero_refused",
            get(Plain, "http://plain.example.com:0/"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s31_decimal_ipv4_refused",
            get(Plain, "http://2130706433/"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s31_hex_ipv4_refused",
            get(Plain, "http://0x7f.1/"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s31_short_ipv4_refused",
            get(Plain, "http://127.1/"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s31_leading_zero_ipv4_refused",
            get(Plain, "http://127.0.0.01/"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s31_ipv6_zone_refused",
            get(Plain, "http://[fe80::1%25eth0]/"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s31_underscore_name_refused",
            get(Plain, "http://a_b.example.com/"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s31_percent_in_host_refused",
            get(Plain, "http://%61pi.github.com/"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s31_ipv4_literal_allowed",
            get(Plain, "http://127.0.0.1:8080/x"),
            Allow("127.0.0.1:8080", "/x", Some(5)),
        ),
        row(
            "s31_bracketed_ipv6_allowed",
            get(Plain, "http://[::1]:8080/x"),
            Allow("[::1]:8080", "/x", Some(6)),
        ),
        row(
            "s31_ipv6_connect_allowed",
            get(Tls("[::1]:443"), "/x"),
            Allow("[::1]:443", "/x", Some(6)),
        ),
        row(
            "s31_asterisk_form_refused",
            Req::new(GH, "OPTIONS", "*"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s31_plain_origin_form_refused",
            get(Plain, "/x"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s31_plain_https_scheme_refused",
            get(Plain, "https://plain.example.com/"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s31_tunnel_ftp_scheme_refused",
            get(GH, "ftp://api.github.com/"),
            Refuse(BadRequest, 400),
        ),
        // ---- §3.2 path normalization
        row(
            "s32_unreserved_decoded_and_matched",
            get(GH, "/repos/acme/widget/%69ssues"),
            Allow("api.github.com:443", GH_ISSUES, Some(0)),
        ),
        row(
            "s32_reserved_stays_encoded_uppercase",
            get(Tls("github.com:443"), "/a%3a%25b"),
            Allow("github.com:443", "/a%3A%25b", Some(7)),
        ),
        row(
            "s32_percent25_matches_only_encoded",
            get(GH, "/search/%25done"),
            Allow("api.github.com:443", "/search/%25done", Some(0)),
        ),
        row(
            "s32_percent25_is_not_decoded_twice",
            get(GH, "/search/%done"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_double_slash_kept",
            get(Tls("github.com:443"), "//a//b"),
            Allow("github.com:443", "//a//b", Some(7)),
        ),
        row(
            "s32_double_slash_is_not_the_listed_path",
            get(GH, "/repos//acme/widget/issues"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "s32_encoded_slash_refused",
            get(GH, "/repos/acme%2Fwidget/issues"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_encoded_slash_lowercase_refused",
            get(GH, "/repos/acme%2fwidget/issues"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_encoded_backslash_refused",
            get(GH, "/repos%5Cx"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_raw_backslash_refused",
            get(GH, "/repos\\x"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_encoded_nul_refused",
            get(GH, "/repos%00"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_malformed_percent_refused",
            get(GH, "/repos%G1"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_truncated_percent_refused",
            get(GH, "/repos%4"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_invalid_utf8_refused",
            get(GH, "/repos/%C3%28"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_valid_utf8_allowed",
            get(Tls("github.com:443"), "/caf%c3%a9"),
            Allow("github.com:443", "/caf%C3%A9", Some(7)),
        ),
        row(
            "s32_dotdot_refused",
            get(GH, "/repos/acme/widget/issues/../../x"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_dot_refused",
            get(GH, "/repos/acme/./widget/issues"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_encoded_dotdot_refused",
            get(GH, "/repos/acme/widget/issues/%2e%2E/x"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_mixed_dotdot_refused",
            get(GH, "/repos/acme/widget/issues/.%2e/x"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_dotdot_before_param_refused",
            get(GH, "/repos/acme/widget/issues/..;x/y"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_dot_before_param_refused",
            get(GH, "/repos/acme/widget/issues/.;/y"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_dotdot_in_absolute_form_refused",
            get(Plain, "http://plain.example.com/a/../b"),
            Refuse(BadPath, 400),
        ),
        row(
            "s32_three_dots_is_a_name",
            get(Tls("github.com:443"), "/a/.../b"),
            Allow("github.com:443", "/a/.../b", Some(7)),
        ),
        row(
            "s32_raw_space_refused",
            get(GH, "/a b"),
            Refuse(BadPath, 400),
        ),
        // ---- §3.3 git push block
        row(
            "s33_receive_pack_segment_refused",
            Req::new(
                Tls("github.com:443"),
                "POST",
                "/acme/widget.git/git-receive-pack",
            ),
            Refuse(GitPush, 403),
        ),
        row(
            "s33_receive_pack_case_refused",
            Req::new(
                Tls("github.com:443"),
                "POST",
                "/acme/widget.git/GIT-RECEIVE-PACK",
            ),
            Refuse(GitPush, 403),
        ),
        row(
            "s33_receive_pack_encoded_refused",
            Req::new(
                Tls("github.com:443"),
                "POST",
                "/acme/widget.git/git%2Dreceive%2dpack",
            ),
            Refuse(GitPush, 403),
        ),
        row(
            "s33_receive_pack_with_param_refused",
            Req::new(
                Tls("github.com:443"),
                "POST",
                "/acme/widget.git/git-receive-pack;x",
            ),
            Refuse(GitPush, 403),
        ),
        row(
            "s33_info_refs_query_refused",
            get(
                Tls("github.com:443"),
                "/acme/widget.git/info/refs?service=git-receive-pack",
            ),
            Refuse(GitPush, 403),
        ),
        row(
            "s33_info_refs_query_encoded_case_refused",
            get(
                Tls("github.com:443"),
                "/acme/widget.git/info/refs?x=1&Service=GIT%2dRECEIVE%2Dpack",
            ),
            Refuse(GitPush, 403),
        ),
        row(
            "s33_content_type_refused",
            Req::new(Tls("github.com:443"), "POST", "/anything")
                .header("content-type", "Application/X-Git-Receive-Pack-Request"),
            Refuse(GitPush, 403),
        ),
        row(
            "s33_unrouted_host_gets_git_push_not_host_refusal",
            Req::new(
                Tls("git.example.net:443"),
                "POST",
                "/r.git/git-receive-pack",
            ),
            Refuse(GitPush, 403),
        ),
        row(
            "s33_before_authority",
            Req::new(Tls("github.com:443"), "POST", "/r.git/git-receive-pack")
                .no_host()
                .header("host", "evil.com"),
            Refuse(GitPush, 403),
        ),
        row(
            "s33_fetch_allowed",
            get(
                Tls("github.com:443"),
                "/acme/widget.git/info/refs?service=git-upload-pack",
            ),
            Allow(
                "github.com:443",
                "/acme/widget.git/info/refs?service=git-upload-pack",
                Some(7),
            ),
        ),
        row(
            "s33_upload_pack_allowed",
            Req::new(
                Tls("github.com:443"),
                "POST",
                "/acme/widget.git/git-upload-pack",
            ),
            Allow(
                "github.com:443",
                "/acme/widget.git/git-upload-pack",
                Some(7),
            ),
        ),
        // ---- §3.4 authority
        row(
            "s34_host_names_other_host",
            get(GH, GH_ISSUES).no_host().header("host", "evil.com"),
            Refuse(AuthorityMismatch, 421),
        ),
        row(
            "s34_host_names_other_port",
            get(GH, GH_ISSUES)
                .no_host()
                .header("host", "api.github.com:8443"),
            Refuse(AuthorityMismatch, 421),
        ),
        row(
            "s34_host_without_port_ok",
            get(GH, GH_ISSUES)
                .no_host()
                .header("host", "API.GitHub.com."),
            Allow("api.github.com:443", GH_ISSUES, Some(0)),
        ),
        row(
            "s34_two_equal_host_headers_refused",
            get(GH, GH_ISSUES).header("host", "api.github.com:443"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s34_two_different_host_headers_refused",
            get(GH, GH_ISSUES).header("host", "evil.com"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s34_h2_authority_other_host",
            get(GH, GH_ISSUES).h2("evil.com"),
            Refuse(AuthorityMismatch, 421),
        ),
        row(
            "s34_h2_authority_ok",
            get(GH, GH_ISSUES).h2("api.github.com"),
            Allow("api.github.com:443", GH_ISSUES, Some(0)),
        ),
        row(
            "s34_h2_host_and_authority_differ",
            get(GH, GH_ISSUES)
                .h2("api.github.com")
                .header("host", "evil.com"),
            Refuse(AuthorityMismatch, 421),
        ),
        row(
            "s34_sni_other_host",
            get(TlsSni("api.github.com:443", Some("evil.com")), GH_ISSUES),
            Refuse(AuthorityMismatch, 421),
        ),
        row(
            "s34_sni_case_and_dot_ok",
            get(
                TlsSni("api.github.com:443", Some("API.github.com.")),
                GH_ISSUES,
            ),
            Allow("api.github.com:443", GH_ISSUES, Some(0)),
        ),
        // The SNI check reuses the `Host` header's normalized host when both
        // are the same text and `Host` has no port.
        row(
            "s34_sni_same_text_as_portless_host_ok",
            get(
                TlsSni("api.github.com:443", Some("API.github.com.")),
                GH_ISSUES,
            )
            .no_host()
            .header("host", "API.github.com."),
            Allow("api.github.com:443", GH_ISSUES, Some(0)),
        ),
        row(
            "s34_sni_same_text_as_host_with_port_refused",
            get(
                TlsSni("api.github.com:443", Some("api.github.com:443")),
                GH_ISSUES,
            ),
            Refuse(AuthorityMismatch, 421),
        ),
        row(
            "s34_sni_and_portless_host_both_other_host",
            get(TlsSni("api.github.com:443", Some("evil.com")), GH_ISSUES)
                .no_host()
                .header("host", "evil.com"),
            Refuse(AuthorityMismatch, 421),
        ),
        row(
            "s34_sni_other_host_than_portless_host",
            get(TlsSni("api.github.com:443", Some("evil.com")), GH_ISSUES)
                .no_host()
                .header("host", "api.github.com"),
            Refuse(AuthorityMismatch, 421),
        ),
        row(
            "s34_no_sni_ok",
            get(TlsSni("api.github.com:443", None), GH_ISSUES),
            Allow("api.github.com:443", GH_ISSUES, Some(0)),
        ),
        row(
            "s34_absolute_target_other_host_in_tunnel",
            get(GH, "https://evil.com/repos/acme/widget/issues"),
            Refuse(AuthorityMismatch, 421),
        ),
        row(
            "s34_absolute_target_other_port_in_tunnel",
            get(GH, "https://api.github.com:444/repos/acme/widget/issues"),
            Refuse(AuthorityMismatch, 421),
        ),
        row(
            "s34_absolute_target_same_host_in_tunnel",
            get(GH, "https://api.github.com/repos/acme/widget/issues"),
            Allow("api.github.com:443", GH_ISSUES, Some(0)),
        ),
        row(
            "s34_http10_without_host_uses_connect",
            get(GH, GH_ISSUES).no_host().version(Version::HTTP_10),
            Allow("api.github.com:443", GH_ISSUES, Some(0)),
        ),
        row(
            "s34_http11_without_host_refused",
            get(GH, GH_ISSUES).no_host(),
            Refuse(BadRequest, 400),
        ),
        row(
            "s34_plain_host_differs",
            get(Plain, "http://plain.example.com/x").header("host", "evil.com"),
            Refuse(AuthorityMismatch, 421),
        ),
        row(
            "s34_plain_host_port_differs",
            get(Plain, "http://plain.example.com/x").header("host", "plain.example.com:81"),
            Refuse(AuthorityMismatch, 421),
        ),
        row(
            "s34_plain_host_default_port_ok",
            get(Plain, "http://plain.example.com/x").header("host", "plain.example.com:80"),
            Allow("plain.example.com:80", "/x", Some(8)),
        ),
        row(
            "s34_plain_url_is_destination",
            get(Plain, "http://PLAIN.example.com.:8080"),
            Allow("plain.example.com:8080", "/", Some(8)),
        ),
        row(
            "s34_bad_host_header_refused",
            get(GH, GH_ISSUES)
                .no_host()
                .header("host", "u@api.github.com"),
            Refuse(BadRequest, 400),
        ),
        // ---- §3.5 framing and method
        row(
            "s35_trace_refused_405",
            Req::new(Tls("github.com:443"), "TRACE", "/"),
            Refuse(MethodNotAllowed, 405),
        ),
        row(
            "s35_trace_on_unrouted_host_is_405",
            Req::new(Tls("nowhere.example:443"), "TRACE", "/"),
            Refuse(MethodNotAllowed, 405),
        ),
        row(
            "s35_connect_in_tunnel_refused_405",
            Req::new(Tls("github.com:443"), "CONNECT", "/"),
            Refuse(MethodNotAllowed, 405),
        ),
        row(
            "s35_connect_authority_form_in_tunnel_refused_405_not_400",
            Req::new(Tls("github.com:443"), "CONNECT", "evil.example:443"),
            Refuse(MethodNotAllowed, 405),
        ),
        row(
            "s35_get_with_body_refused",
            get(Tls("github.com:443"), "/")
                .header("content-length", "5")
                .body(BodyHint::NonEmpty),
            Refuse(BadRequest, 400),
        ),
        row(
            "s35_head_with_chunked_refused",
            Req::new(Tls("github.com:443"), "HEAD", "/").header("transfer-encoding", "chunked"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s35_get_h2_data_refused",
            get(GH, GH_ISSUES)
                .h2("api.github.com")
                .body(BodyHint::NonEmpty),
            Refuse(BadRequest, 400),
        ),
        row(
            "s35_get_content_length_zero_ok",
            get(Tls("github.com:443"), "/").header("content-length", "0"),
            Allow("github.com:443", "/", Some(7)),
        ),
        row(
            "s35_cl_and_te_refused",
            Req::new(Tls("github.com:443"), "POST", "/")
                .header("content-length", "5")
                .header("transfer-encoding", "chunked"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s35_conflicting_cl_refused",
            Req::new(Tls("github.com:443"), "POST", "/")
                .header("content-length", "5")
                .header("content-length", "6"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s35_cl_list_conflict_refused",
            Req::new(Tls("github.com:443"), "POST", "/").header("content-length", "5, 6"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s35_cl_not_number_refused",
            Req::new(Tls("github.com:443"), "POST", "/").header("content-length", "+5"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s35_te_not_chunked_last_refused",
            Req::new(Tls("github.com:443"), "POST", "/")
                .header("transfer-encoding", "chunked, gzip"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s35_upgrade_h2c_refused",
            get(Tls("github.com:443"), "/")
                .header("connection", "Upgrade, HTTP2-Settings")
                .header("upgrade", "h2c"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s35_upgrade_other_refused",
            get(Tls("github.com:443"), "/")
                .header("connection", "upgrade")
                .header("upgrade", "websocket, foo"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s35_websocket_on_post_refused",
            Req::new(Tls("github.com:443"), "POST", "/")
                .header("connection", "upgrade")
                .header("upgrade", "websocket"),
            Refuse(BadRequest, 400),
        ),
        row(
            "s35_websocket_on_get_allowed",
            get(Tls("github.com:443"), "/ws")
                .header("connection", "Upgrade")
                .header("upgrade", "WebSocket")
                .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
                .header("sec-websocket-version", "13"),
            Allow("github.com:443", "/ws", Some(7)),
        ),
        row(
            "s7_delete_with_body_allowed",
            Req::new(Tls("github.com:443"), "DELETE", "/x")
                .header("content-length", "3")
                .body(BodyHint::NonEmpty),
            Allow("github.com:443", "/x", Some(7)),
        ),
        // ---- §3.6 routes
        row(
            "s36_unrouted_host_refused",
            get(Tls("evil.example.com:443"), "/"),
            Refuse(HostNotAllowed, 403),
        ),
        row(
            "s36_route_method_refused_403",
            Req::new(GH, "DELETE", GH_ISSUES),
            Refuse(MethodNotAllowed, 403),
        ),
        row(
            "s36_deny_list_wins_over_allow",
            get(GH, "/repos/acme/widget/issues/secret"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "s36_deny_list_covers_below",
            get(GH, "/repos/acme/widget/issues/secret/x"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "s36_deny_list_sees_through_segment_parameters",
            get(GH, "/repos/acme/widget/issues/secret;jsessionid=1/x"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "s36_deny_list_sees_through_empty_parameter",
            get(GH, "/repos/acme/widget/issues/secret;"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "s36_parameter_on_allowed_path_is_sent_as_is",
            get(GH, "/repos/acme/widget/issues/7;v=1"),
            Allow(
                "api.github.com:443",
                "/repos/acme/widget/issues/7;v=1",
                Some(0),
            ),
        ),
        row(
            "s36_allow_list_miss",
            get(GH, "/repos/acme/other"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "s36_prefix_is_not_string_prefix",
            get(GH, "/repos/acme/widget/issuesX"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "s36_single_star_not_two_segments",
            get(GH, "/users/a/b/repos"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "s36_single_star_not_empty_segment",
            get(GH, "/users//repos"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "s36_regex_anchored_at_end",
            get(GH, "/v3/meta/x"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "s36_regex_anchored_at_start",
            get(GH, "/x/v3/meta"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "s36_regex_matches_normalized_path",
            get(GH, "/v3/%6Deta"),
            Allow("api.github.com:443", "/v3/meta", Some(0)),
        ),
        row(
            "s36_pattern_is_case_sensitive",
            get(GH, "/REPOS/acme/widget/issues"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "s36_host_case_insensitive",
            get(Tls("API.GITHUB.COM.:443"), GH_ISSUES)
                .no_host()
                .header("host", "api.github.com"),
            Allow("api.github.com:443", GH_ISSUES, Some(0)),
        ),
        row(
            "s36_wildcard_matches_subdomain",
            get(Tls("www.npmjs.org:443"), "/x"),
            Allow("www.npmjs.org:443", "/x", Some(2)),
        ),
        row(
            "s36_wildcard_matches_deep_subdomain",
            get(Tls("a.b.npmjs.org:443"), "/x"),
            Allow("a.b.npmjs.org:443", "/x", Some(2)),
        ),
        row(
            "s36_wildcard_not_apex",
            get(Tls("npmjs.org:443"), "/x"),
            Refuse(HostNotAllowed, 403),
        ),
        row(
            "s36_wildcard_not_lookalike",
            get(Tls("evilnpmjs.org:443"), "/x"),
            Refuse(HostNotAllowed, 403),
        ),
        row(
            "s36_exact_beats_wildcard",
            Req::new(Tls("registry.npmjs.org:443"), "POST", "/x"),
            Refuse(MethodNotAllowed, 403),
        ),
        row(
            "s36_longer_wildcard_wins",
            get(Tls("x.cdn.npmjs.org:443"), "/other"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "s36_longer_wildcard_allows",
            get(Tls("x.cdn.npmjs.org:443"), "/pkg/a"),
            Allow("x.cdn.npmjs.org:443", "/pkg/a", Some(3)),
        ),
        row(
            "s36_ip_route_matches_ip",
            get(Tls("127.0.0.1:443"), "/"),
            Allow("127.0.0.1:443", "/", Some(5)),
        ),
        row(
            "s36_ipv4_mapped_ipv6_does_not_match_ipv4_route",
            get(Tls("[::ffff:127.0.0.1]:443"), "/"),
            Refuse(HostNotAllowed, 403),
        ),
        // ---- §3.7 credentials
        row(
            "s37_credential_over_cleartext_tunnel_refused",
            get(Clear("api.github.com:80"), GH_ISSUES),
            Refuse(CleartextCredentials, 403),
        ),
        row(
            "s37_credential_over_plain_proxy_refused",
            get(Plain, "http://api.github.com/repos/acme/widget/issues"),
            Refuse(CleartextCredentials, 403),
        ),
        row(
            "s37_credential_route_path_checked_before_cleartext",
            get(Plain, "http://api.github.com/other"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "s37_no_credential_route_over_cleartext_ok",
            get(Clear("github.com:80"), "/x"),
            Allow("github.com:80", "/x", Some(7)),
        ),
        // ---- §7
        row(
            "s7_unrouted_host_inside_tls_is_decided_not_tunnelled",
            get(Tls("unrouted.example.org:443"), "/"),
            Refuse(HostNotAllowed, 403),
        ),
        // ---- issue 12: deny list against the forms origins fold (§2)
        row(
            "fold_deny_case_changed_owner_refused",
            get(FORGE, "/repos/acme/Widget/git/refs"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "fold_deny_doubled_slash_refused",
            get(FORGE, "/repos/acme/widget//git/refs"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "fold_deny_leading_double_slash_refused",
            get(FORGE, "//repos/acme/widget/git/refs"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "fold_deny_case_slash_and_parameter_together_refused",
            get(FORGE, "/REPOS/acme//Widget;v=1/git/refs"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "fold_deny_parameter_only_segment_refused",
            get(FORGE, "/repos/acme/widget/;x/git/refs"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "fold_deny_encoded_upper_case_refused",
            get(FORGE, "/repos/acme/%57idget/git/refs"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "fold_deny_upper_case_pattern_matches_lower_case_path",
            get(FORGE, "/admin/x/keys"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "fold_deny_upper_case_pattern_matches_as_written",
            get(FORGE, "/Admin/x/keys/1"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "fold_deny_upper_case_pattern_with_doubled_slash",
            get(FORGE, "/ADMIN//x//keys"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "fold_deny_regex_case_insensitive",
            get(FORGE, "/v1/private/abc"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "fold_deny_regex_upper_case_path",
            get(FORGE, "/V1/PRIVATE/ABC"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "fold_deny_regex_with_doubled_slash",
            get(FORGE, "/v1//private/abc"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "fold_deny_neighbour_segment_still_allowed",
            get(FORGE, "/repos/acme/widget/gitx"),
            Allow("forge.example.com:443", "/repos/acme/widget/gitx", Some(9)),
        ),
        row(
            "fold_deny_other_repository_still_allowed",
            get(FORGE, "/repos/acme/Widgets/git/refs"),
            Allow(
                "forge.example.com:443",
                "/repos/acme/Widgets/git/refs",
                Some(9),
            ),
        ),
        row(
            "fold_deny_path_sent_unfolded",
            get(FORGE, "/Repos//acme"),
            Allow("forge.example.com:443", "/Repos//acme", Some(9)),
        ),
        // ---- issue 12: allow list against the `;`-stripped form too (§2)
        row(
            "param_allow_hidden_extension_refused",
            get(FILES, "/files/secret.key;.txt"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "param_allow_stripped_form_has_empty_segment_refused",
            get(GH, "/users/;x/repos"),
            Refuse(PathNotAllowed, 403),
        ),
        row(
            "param_allow_parameter_on_star_segment_allowed",
            get(GH, "/users/bob;x/repos"),
            Allow("api.github.com:443", "/users/bob;x/repos", Some(0)),
        ),
        row(
            "param_allow_both_forms_allowed",
            get(GH, "/repos/acme/widget/issues/7;v=1"),
            Allow(
                "api.github.com:443",
                "/repos/acme/widget/issues/7;v=1",
                Some(0),
            ),
        ),
        row(
            "param_allow_plain_file_allowed",
            get(FILES, "/files/notes.txt"),
            Allow("files.example.com:443", "/files/notes.txt", Some(10)),
        ),
        row(
            "param_allow_parameter_below_allowed_file_allowed",
            get(FILES, "/files/x.txt/;.txt"),
            Allow("files.example.com:443", "/files/x.txt/;.txt", Some(10)),
        ),
        row(
            "param_allow_param_name_is_the_extension_refused",
            get(FILES, "/files/secret;x.txt"),
            Refuse(PathNotAllowed, 403),
        ),
        // ---- issue 12: method overrides on a route with `methods` (§2)
        row(
            "override_header_outside_methods_refused",
            get(FORGE, "/x").header("x-http-method-override", "DELETE"),
            Refuse(MethodNotAllowed, 403),
        ),
        row(
            "override_x_http_method_refused",
            get(FORGE, "/x").header("X-HTTP-Method", "put"),
            Refuse(MethodNotAllowed, 403),
        ),
        row(
            "override_x_method_override_refused",
            get(FORGE, "/x").header("x-method-override", "Patch"),
            Refuse(MethodNotAllowed, 403),
        ),
        row(
            "override_second_value_refused",
            get(FORGE, "/x")
                .header("x-http-method-override", "GET")
                .header("x-http-method-override", "POST"),
            Refuse(MethodNotAllowed, 403),
        ),
        row(
            "override_comma_list_refused",
            get(FORGE, "/x").header("x-http-method-override", "head, DELETE"),
            Refuse(MethodNotAllowed, 403),
        ),
        row(
            "override_query_parameter_refused",
            get(FORGE, "/x?a=1&_method=DELETE"),
            Refuse(MethodNotAllowed, 403),
        ),
        row(
            "override_query_parameter_encoded_refused",
            get(FORGE, "/x?%5Fmethod=d%65lete"),
            Refuse(MethodNotAllowed, 403),
        ),
        row(
            "override_query_parameter_name_case_refused",
            get(FORGE, "/x?_METHOD=put"),
            Refuse(MethodNotAllowed, 403),
        ),
        row(
            "override_naming_listed_method_allowed",
            get(FORGE, "/x?_method=get").header("x-http-method-override", "head"),
            Allow("forge.example.com:443", "/x?_method=get", Some(9)),
        ),
        row(
            "override_other_parameter_allowed",
            get(FORGE, "/x?x_method=DELETE&method=PUT"),
            Allow(
                "forge.example.com:443",
                "/x?x_method=DELETE&method=PUT",
                Some(9),
            ),
        ),
        row(
            "override_without_methods_allowed",
            get(Tls("github.com:443"), "/x?_method=DELETE").header("x-http-method", "PUT"),
            Allow("github.com:443", "/x?_method=DELETE", Some(7)),
        ),
        row(
            "override_to_trace_refused_on_every_route",
            get(Tls("github.com:443"), "/x").header("x-http-method-override", "trace"),
            Refuse(MethodNotAllowed, 405),
        ),
        row(
            "override_to_trace_in_query_refused",
            get(Tls("github.com:443"), "/x?_method=TRACE"),
            Refuse(MethodNotAllowed, 405),
        ),
        row(
            "override_to_connect_refused",
            get(GH, GH_ISSUES).header("x-method-override", "CONNECT"),
            Refuse(MethodNotAllowed, 405),
        ),
        // ---- issue 12: the info/refs query rule is §3.3 exactly
        row(
            "s33_query_on_other_path_not_a_push",
            get(
                Tls("github.com:443"),
                "/x/info/refs2?service=git-receive-pack",
            ),
            Allow(
                "github.com:443",
                "/x/info/refs2?service=git-receive-pack",
                Some(7),
            ),
        ),
        row(
            "s33_query_on_path_below_info_refs_not_a_push",
            get(
                Tls("github.com:443"),
                "/x/info/refs/y?service=git-receive-pack",
            ),
            Allow(
                "github.com:443",
                "/x/info/refs/y?service=git-receive-pack",
                Some(7),
            ),
        ),
        row(
            "s33_info_refs_case_and_trailing_slash_refused",
            get(
                Tls("github.com:443"),
                "/r.git/Info/Refs/?service=git-receive-pack",
            ),
            Refuse(GitPush, 403),
        ),
    ]
}

const FORGE: Via = Tls("forge.example.com:443");
const FILES: Via = Tls("files.example.com:443");

fn check(p: &Policy, r: &Row) -> Result<Option<Reason>, String> {
    let facts = r.req.facts();
    let d = p.decide(&facts);
    match (&r.expect, &d) {
        (Allow(auth, pq, route), Decision::Allow(a)) => {
            let got_route = a.route.map(|x| x.index());
            if a.authority() != *auth || a.path_and_query != *pq || got_route != *route {
                return Err(format!(
                    "{}: allowed to {} {} route {:?}, expected {auth} {pq} {route:?}",
                    r.name,
                    a.authority(),
                    a.path_and_query,
                    got_route
                ));
            }
            Ok(None)
        }
        (Refuse(reason, status), Decision::Refuse(f)) => {
            if f.reason != *reason || f.status.as_u16() != *status {
                return Err(format!(
                    "{}: refused {} {} ({}), expected {} {status}",
                    r.name,
                    f.status.as_u16(),
                    f.reason,
                    f.message,
                    reason
                ));
            }
            if f.message.is_empty() || f.message.contains('\n') {
                return Err(format!(
                    "{}: refusal message must be one non-empty line",
                    r.name
                ));
            }
            Ok(Some(*reason))
        }
        (_, Decision::Allow(a)) => Err(format!(
            "{}: allowed to {} {}, expected a refusal",
            r.name,
            a.authority(),
            a.path_and_query
        )),
        (_, Decision::Refuse(f)) => Err(format!(
            "{}: refused {} ({}), expected allow",
            r.name, f.reason, f.message
        )),
    }
}

#[test]
fn decide_table() {
    let p = policy("table.yaml");
    let rows = rows();
    let mut names = HashSet::new();
    let mut failures = Vec::new();
    let mut seen = HashSet::new();
    for r in &rows {
        assert!(names.insert(r.name), "duplicate row name {}", r.name);
        match check(&p, r) {
            Ok(Some(reason)) => {
                seen.insert(reason);
            }
            Ok(None) => {}
            Err(e) => failures.push(e),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
    // Every reason the policy can return has a row.
    for reason in [
        BadRequest,
        BadPath,
        GitPush,
        AuthorityMismatch,
        MethodNotAllowed,
        HostNotAllowed,
        PathNotAllowed,
        CleartextCredentials,
    ] {
        assert!(seen.contains(&reason), "no row refuses with {reason}");
    }
}

#[test]
fn explain_agrees_with_decide_on_every_row() {
    let p = policy("table.yaml");
    for r in rows() {
        let facts = r.req.facts();
        let (d, steps) = p.explain(&facts);
        assert_eq!(d.label(), p.decide(&facts).label(), "{}", r.name);
        assert!(
            !steps.is_empty() && steps.last().is_some_and(|s| s.starts_with("=> ")),
            "{}: {steps:?}",
            r.name
        );
    }
}

#[test]
fn credential_route_strips_fixed_set_auth_header_and_extras() {
    let p = policy("table.yaml");
    let req = get(Tls("api.anthropic.com:443"), "/v1/messages");
    let facts = req.facts();
    let Decision::Allow(a) = p.decide(&facts) else {
        panic!("expected allow")
    };
    let cred = a.credential.expect("credential");
    assert_eq!(cred.header.as_str(), "x-api-key");
    assert_eq!(cred.scheme, None);
    assert_eq!(
        cred.source,
        addon_rules::TokenSource::File("/run/secrets/anthropic".into())
    );
    let strip: Vec<&str> = a.strip_headers.iter().map(|h| h.as_str()).collect();
    assert_eq!(
        strip,
        [
            "authorization",
            "proxy-authorization",
            "cookie",
            "x-api-key",
            "x-debug"
        ]
    );

    let req = get(GH, GH_ISSUES);
    let facts = req.facts();
    let Decision::Allow(a) = p.decide(&facts) else {
        panic!("expected allow")
    };
    let cred = a.credential.expect("credential");
    assert_eq!(
        (cred.header.as_str(), cred.scheme.as_deref()),
        ("authorization", Some("Bearer"))
    );
    assert_eq!(
        cred.source,
        addon_rules::TokenSource::Env("EGRESS_PROXY_TOKEN_0".into())
    );
}

#[test]
fn route_without_credential_strips_only_its_extras() {
    let p = policy("table.yaml");
    let req = get(Tls("plain.example.com:443"), "/");
    let facts = req.facts();
    let Decision::Allow(a) = p.decide(&facts) else {
        panic!("expected allow")
    };
    assert!(a.credential.is_none());
    let strip: Vec<&str> = a.strip_headers.iter().map(|h| h.as_str()).collect();
    assert_eq!(strip, ["x-trace"]);
}

#[test]
fn websocket_flag_only_for_complete_handshake() {
    let p = policy("table.yaml");
    let full = get(Tls("github.com:443"), "/ws")
        .header("connection", "keep-alive, Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-key", "k")
        .header("sec-websocket-version", "13");
    let Decision::Allow(a) = p.decide(&full.facts()) else {
        panic!("expected allow")
    };
    assert!(a.websocket);
    let partial = get(Tls("github.com:443"), "/ws").header("upgrade", "websocket");
    let Decision::Allow(a) = p.decide(&partial.facts()) else {
        panic!("expected allow")
    };
    assert!(!a.websocket);
    let plain = get(Tls("github.com:443"), "/ws");
    let Decision::Allow(a) = p.decide(&plain.facts()) else {
        panic!("expected allow")
    };
    assert!(!a.websocket);
}

#[test]
fn unmatched_forward_forwards_without_credential_but_blocks_push() {
    let p = policy("forward.yaml");
    let req = get(Tls("example.org:443"), "/a?b=c").header("authorization", "Bearer agent-own");
    let Decision::Allow(a) = p.decide(&req.facts()) else {
        panic!("expected allow")
    };
    assert!(a.route.is_none() && a.credential.is_none() && a.strip_headers.is_empty());
    assert_eq!(
        (a.authority().as_str(), a.path_and_query.as_str()),
        ("example.org:443", "/a?b=c")
    );
    for target in [
        "/r.git/git-receive-pack",
        "/r.git/info/refs?service=git-receive-pack",
    ] {
        let req = Req::new(Tls("example.org:443"), "POST", target);
        let Decision::Refuse(r) = p.decide(&req.facts()) else {
            panic!("push allowed under forward: {target}")
        };
        assert_eq!(r.reason, GitPush);
    }
    // Still refuses bad paths and framing under forward.
    let req = get(Tls("example.org:443"), "/a/../b");
    assert_eq!(p.decide(&req.facts()).label(), "bad-path");
    // A credential route still refuses cleartext under forward.
    let req = get(Clear("api.github.com:80"), "/");
    assert_eq!(p.decide(&req.facts()).label(), "cleartext-credentials");
}

#[test]
fn refusal_messages_never_echo_the_credential_source() {
    // The message goes to the agent: it must not name where the secret lives.
    let p = policy("table.yaml");
    for r in rows() {
        if let Decision::Refuse(f) = p.decide(&r.req.facts()) {
            assert!(
                !f.message.contains("EGRESS_PROXY_TOKEN_0") && !f.message.contains("/run/secrets"),
                "{}: {}",
                r.name,
                f.message
            );
        }
    }
}

#[test]
fn connect_target_rules() {
    use addon_rules::parse_connect_target as p;
    let t = p("API.GitHub.COM.:443").expect("valid");
    assert_eq!((t.host.as_str(), t.port), ("api.github.com", 443));
    let t = p("[::1]:8443").expect("valid");
    assert_eq!(
        (t.host.as_str(), t.port, t.authority().as_str()),
        ("::1", 8443, "[::1]:8443")
    );
    for bad in [
        "api.github.com",
        "api.github.com:0",
        "api.github.com:65536",
        "api.github.com:",
        "u@api.github.com:443",
        "2130706433:443",
        "0x7f.1:443",
        "127.1:443",
        "[fe80::1%eth0]:443",
        "::1:443",
        "a b:443",
        ":443",
        "[::1]x:443",
    ] {
        let r = p(bad).expect_err(bad);
        assert_eq!((r.reason, r.status.as_u16()), (BadRequest, 400), "{bad}");
    }
}

#[test]
fn refusals_after_route_matching_name_the_route() {
    // The access log's `route` (issue 12): set on every refusal that found a
    // route, and only on those.
    let p = policy("table.yaml");
    let cases = [
        (
            get(GH, "/other"),
            "path-not-allowed",
            Some("api.github.com"),
        ),
        (
            get(GH, "/repos/acme/widget/issues/secret"),
            "path-not-allowed",
            Some("api.github.com"),
        ),
        (
            Req::new(GH, "DELETE", GH_ISSUES),
            "method-not-allowed",
            Some("api.github.com"),
        ),
        (
            get(FORGE, "/x").header("x-http-method-override", "DELETE"),
            "method-not-allowed",
            Some("forge.example.com"),
        ),
        (
            get(Clear("api.github.com:80"), GH_ISSUES),
            "cleartext-credentials",
            Some("api.github.com"),
        ),
        (
            get(Tls("x.cdn.npmjs.org:443"), "/other"),
            "path-not-allowed",
            Some("*.cdn.npmjs.org"),
        ),
        (
            get(Tls("nowhere.example:443"), "/"),
            "host-not-allowed",
            None,
        ),
        (get(GH, "/a/../b"), "bad-path", None),
        (Req::new(GH, "TRACE", "/"), "method-not-allowed", None),
    ];
    for (req, reason, route) in cases {
        let Decision::Refuse(r) = p.decide(&req.facts()) else {
            panic!("{} {}: expected a refusal", req.method, req.target)
        };
        assert_eq!(
            (r.reason.as_str(), r.route.as_deref()),
            (reason, route),
            "{} {}",
            req.method,
            req.target
        );
    }
}
