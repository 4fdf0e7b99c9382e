//! The one table of loopback addresses: every test that binds an address, or names one in a
//! config, takes a [`Block`], the /24 `127.0.N.0/24` with N its number, and no other test gets
//! that N. The tests are threads of one process, run in parallel, so two of them sharing an
//! address could take each other's ports (Pebble's fixed ports, a node server's 5002); with a
//! block each, fixed ports are safe.
//!
//! Inside a block the convention is that of `pebble::Lab` and `site::Site`: the CA (or the
//! stub) on .1/.2, the VIP on .10, nodes on .11 and up; client source addresses from .101.
//!
//! Never handed out: the blocks in [`RESERVED`]: 127.0.0.0/24 (127.0.0.1 is everyone's, and
//! `Site::in_dir` names 127.0.0.254 as a VIP that nothing serves) and those of the scripts a
//! developer may run beside the tests. A new test that binds anything adds a line below; a
//! duplicate number does not compile (the enum's discriminants), and
//! `blocks_are_distinct_and_not_reserved` checks the rest.
//!
//! Not loopback, so not in the table: failover.rs puts 198.18.0.0/24 (RFC 2544's benchmarking
//! range) on interfaces of network namespaces it makes itself (`netns`), one set per test;
//! those addresses exist nowhere else and cannot collide.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Third octets that are not the tests' to take, and whose they are.
pub const RESERVED: [(u8, &str); 5] = [
    (0, "127.0.0.1, and Site::in_dir's unserved VIP 127.0.0.254"),
    (5, "scripts/bench-check (examples/drift-lab.rs)"),
    (20, "scripts/lab"),
    (30, "scripts/bench-issue (BENCH_NET)"),
    (98, "scripts/bench-serve"),
];

macro_rules! blocks {
    ($($(#[doc = $doc:literal])* $name:ident = $n:literal,)*) => {
        /// A test's own /24 of loopback addresses: `127.0.<discriminant>.0/24`.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Block {
            $($(#[doc = $doc])* $name = $n,)*
        }

        impl Block {
            /// Every block, in table order.
            pub const ALL: &'static [Block] = &[$(Block::$name,)*];
        }
    };
}

blocks! {
    /// install.rs: `Site::new` sites (configs only; `serve --watch` binds port 0).
    Install = 2,
    /// install_crash.rs: its `Site::new` site (config only).
    InstallCrash = 3,
    /// drift.rs, the local checks: node addresses in configs only.
    DriftLocal = 4,
    /// lifecycle.rs `issue_on_one_node_all_install_renew_when_due_only_and_roll_back`.
    LifecycleIssue = 6,
    /// lifecycle.rs `three_renew_processes_at_once_place_one_order`.
    LifecycleRenewRace = 7,
    /// renew_stub.rs `ari_window_open_renews_with_replaces_and_rate_limit_sets_next_attempt`.
    RenewAriOpen = 8,
    /// renew_stub.rs `ari_window_later_holds_back_the_lifetime_rule`.
    RenewAriLater = 9,
    /// issue.rs `shared_layout_issues_one_certificate_vip_first`.
    IssueShared = 10,
    /// issue.rs `per_host_layout_issues_one_certificate_per_node`.
    IssuePerHost = 11,
    /// issue.rs `node_down_fails_preflight_and_asks_the_ca_nothing`.
    IssueNodeDown = 12,
    /// issue.rs `wrong_http_port_is_caught_by_preflight`.
    IssueWrongPort = 13,
    /// issue.rs `second_issue_while_lease_held_exits_zero_and_changes_nothing`.
    IssueLeaseHeld = 14,
    /// issue.rs `ca_stopped_mid_run_cleans_up_and_publishes_nothing`.
    IssueCaStopped = 15,
    /// issue.rs `a_ca_refusing_half_of_all_nonces_still_issues_and_renews`.
    IssueBadNonce = 16,
    /// issue.rs `preflight_names_a_missing_dns_record`.
    IssueMissingDns = 17,
    /// issue.rs `a_plain_web_server_on_the_vip_works_too`.
    IssuePlainWeb = 18,
    /// issue.rs `preflight_sees_a_stale_aaaa_record`.
    IssueStaleAaaa = 19,
    /// issue.rs `validation_hooks_run_once_per_order_around_validation` (Pebble lab).
    IssueHooks = 240,
    /// issue.rs `a_failing_pre_validation_hook_stops_the_order_before_validation` (Pebble lab).
    IssueHookFails = 241,
    /// drift.rs `fleet_reports_node_drift_through_status`.
    DriftFleetStatus = 31,
    /// drift.rs `fleet_node_server_down` (the second node's address must stay unserved).
    DriftFleetDown = 32,
    /// drift.rs `fleet_probe_serving_a_different_certificate`.
    DriftFleetProbe = 33,
    /// serve.rs `serves_tokens_and_nothing_else`.
    ServeTokens = 40,
    /// serve.rs `health_and_status_are_public_and_bounded`.
    ServeHealth = 41,
    /// serve.rs `holds_5000_idle_connections_and_stays_responsive`.
    ServeIdle = 42,
    /// serve.rs `batch_route_answers_each_token_with_the_same_rules`.
    ServeBatch = 43,
    /// serve.rs `a_replaced_webroot_is_served_at_once`.
    ServeWebrootSwap = 46,
    /// serve_abuse.rs `a_request_over_its_share_is_parked_then_closed_and_nobody_else_waits`.
    ServeRations = 47,
    /// balancer.rs `rr_follows_weights_exactly`.
    BalancerRr = 50,
    /// balancer.rs `wlc_fills_by_weight_and_refills_the_emptiest`.
    BalancerWlc = 51,
    /// balancer.rs `sh_keeps_each_client_on_its_node_and_moves_only_a_drained_nodes_clients`
    /// (its 40 client source addresses too).
    BalancerSh = 52,
    /// balancer.rs `dead_node_costs_clients_nothing_leaves_rotation_and_returns_after_rise`.
    BalancerDeadNode = 53,
    /// balancer.rs `sighup_drains_weight_zero_adds_nodes_and_keeps_established_streams`.
    BalancerSighup = 54,
    /// balancer.rs `sigterm_stops_accepting_drains_then_exits`.
    BalancerSigterm = 55,
    /// balancer.rs `holds_eight_thousand_concurrent_connections`.
    BalancerCapacity = 56,
    /// balancer.rs `default_services_check_real_node_servers` (ports 80 and 2811 on the VIP).
    BalancerDefaults = 57,
    /// balancer.rs `idle_timeout_closes_only_silent_connections`.
    BalancerIdle = 58,
    /// balancer.rs `bulk_both_ways_is_byte_identical_under_backpressure_and_half_close`.
    BalancerBulk = 59,
    /// gridftp.rs: two globus-gridftp-server nodes and the balancer's VIP on 2811.
    Gridftp = 60,
    /// acme_ca.rs `renew_recovers_when_the_ca_forgot_the_account`.
    AcmeForgotAccount = 110,
    /// acme_ca.rs `ca_down_error_names_the_ca_first`.
    AcmeCaDown = 111,
    /// acme_ca.rs `account_show_update_rollover_deactivate`.
    AcmeAccountCommands = 112,
    /// acme_ca.rs `eab_issue_needs_the_right_key_in_a_private_file`.
    AcmeEab = 113,
    /// acme_ca.rs `revoke_marks_the_version_reissues_and_nothing_goes_back_to_it` (VIP and
    /// two nodes).
    AcmeRevoke = 114,
    /// renew_stub.rs `profile_is_sent_in_new_order_and_refused_when_not_offered`, offered.
    ProfileOffered = 115,
    /// renew_stub.rs `profile_is_sent_in_new_order_and_refused_when_not_offered`, missing.
    ProfileMissing = 116,
    /// acme_ca.rs `an_unreachable_ca_falls_through_to_the_next_and_state_names_the_issuer`
    /// (.3: the dead CA's address).
    AcmeFallback = 117,
    /// renew_stub.rs `fallback_after_a_503_issues_from_pebble_in_the_same_run` (.1: the stub).
    FallbackUnavailable = 118,
    /// renew_stub.rs `fallback_after_rate_limited_issues_from_pebble_in_the_same_run`.
    FallbackRateLimited = 119,
    /// renew_stub.rs `a_validation_failure_does_not_fall_through` (.20: a web server that is
    /// not vipcert, where the VIP's name resolves).
    FallbackValidation = 120,
    /// cluster.rs `added_node_makes_renew_issue_the_new_name_set_and_every_node_installs_it`.
    ClusterChange = 77,
    /// notify.rs `failed_renew_runs_the_hook_once_with_the_failure_in_its_environment`.
    NotifyFailure = 78,
    /// notify.rs `failed_issue_runs_the_hook_once_with_the_lineage_in_its_environment`.
    NotifyIssue = 121,
    /// notify.rs `failed_reissue_after_revoke_runs_the_hook`.
    NotifyReissue = 124,
    /// serve_abuse.rs `idle_flood_beyond_the_open_file_limit_does_not_lock_out_another_client`.
    ServeIdleNofile = 125,
    /// serve_abuse.rs `health_is_never_parked_however_often_one_address_asks`.
    ServeHealthFlood = 126,
    /// serve_abuse.rs `an_invalid_host_is_400_as_in_nginx`.
    AtkHost = 130,
    /// serve_abuse.rs `a_symlinked_directory_above_the_webroot_is_not_followed`.
    AtkWebrootLink = 131,
    /// serve_abuse.rs `a_dual_stack_listener_knows_ipv4_clients_by_their_ipv4_address` (the
    /// node listens on `[::ffff:127.0.132.11]:8080`).
    AtkDualStack = 132,
    /// serve_abuse.rs `a_share_that_hangs_does_not_stop_the_server_answering`.
    AtkHungShare = 133,
    /// renew_stub.rs `issue_refuses_a_profile_without_cn_and_publishes_with_classic`, tlsserver.
    ProfileNoCn = 122,
    /// renew_stub.rs `issue_refuses_a_profile_without_cn_and_publishes_with_classic`, classic.
    ProfileClassic = 123,
    /// nfs.rs `shared_layout_through_caching_views`.
    NfsShared = 70,
    /// nfs.rs `per_host_layout_through_caching_views`.
    NfsPerHost = 71,
    /// watch.rs `inotify_installs_a_new_version_and_a_rollback_within_milliseconds`.
    WatchInotify = 72,
    /// watch.rs `poll_mode_installs_within_the_poll_interval`.
    WatchPoll = 73,
    /// pair.rs: `Site::new` sites (configs only).
    Pair = 81,
    /// lease.rs `killed_holder_on_this_host_is_taken_over_at_once` (a silent listener on .11:80).
    LeaseHere = 82,
    /// lease.rs `killed_holder_on_another_host_stops_blocking_within_three_refreshes` (.11:80).
    LeaseElsewhere = 83,
    /// stale.rs: `vipcert serve` on .11:8080.
    Stale = 84,
    /// pair.rs `gsi_gridftp_server_uses_the_links_mode_pair`: a GSI globus-gridftp-server on
    /// .11:2811.
    PairGsi = 85,
    /// xrootd.rs `xrootd_serves_the_links_mode_pair_and_the_new_one_after_a_restart`: Pebble
    /// .2, dtn1 on .11 (its `vipcert serve`, and the name the XRootD client resolves; xrootd
    /// itself binds the wildcard address, on ports 21094 and 21095 that no other test uses).
    Xrootd = 86,
    /// verify.rs `tampered_certificates_install_and_check_agree`: dtn1 of row i on .(11+i)
    /// (a node server for the fleet rows), dtn2 on .250 (never served).
    Verify = 74,
    /// serve_abuse.rs `challenge_p99_under_10ms_while_5000_connections_hammer_status`
    /// (flood sources .101–.125).
    ServeStatusFlood = 90,
    /// serve_abuse.rs `half_closed_clients_get_their_answer`.
    ServeHalfClose = 91,
    /// serve_abuse.rs `http11_needs_exactly_one_host`.
    ServeHost = 92,
    /// serve_abuse.rs `hard_links_are_not_served`.
    ServeHardLink = 93,
    /// serve_abuse.rs `idle_flood_from_one_address_does_not_lock_out_another`.
    ServeIdleFlood = 94,
    /// serve_abuse.rs `idle_connections_cost_at_most_4kb_and_are_given_back` (sources
    /// .101–.180).
    ServeIdleMemory = 95,
    /// serve_abuse.rs `a_full_budget_closes_the_oldest_idle_connection_for_a_new_client`.
    ServeBudget = 96,
    /// balancer_fds.rs `floods_meet_the_balancers_limits_not_the_backends`.
    BalancerFds = 97,
    /// balancer_fds.rs `admin_slowloris_takes_no_descriptors_from_checks_or_clients`.
    AtkBalAdmin = 140,
    /// balancer.rs `a_node_that_half_closes_first_still_gets_the_clients_data`.
    AtkBalNodeHalfClose = 141,
    /// balancer_fds.rs `a_flood_on_one_service_leaves_another_its_share_of_descriptors`.
    AtkBalShares = 142,
    /// balancer.rs `a_client_silent_after_the_nodes_fin_is_closed_after_30_s`.
    AtkBalNodeFin = 143,
    /// bounds.rs `a_year_10000_next_attempt_never_panics_check_or_renew` (configs only; the
    /// CA URL on .1 answers nothing).
    BoundsFarFuture = 160,
    /// bounds.rs `a_year_10000_next_attempt_never_panics_the_fleet_check`.
    BoundsFarFutureFleet = 161,
    /// bounds.rs `stray_version_directories_never_wrap_the_counter` (Pebble lab).
    BoundsVersions = 162,
    /// renew_stub.rs `retry_after_in_year_9999_is_capped_at_a_third_of_the_remaining_lifetime`.
    RetryAfterDate = 163,
    /// renew_stub.rs `retry_after_of_u64_max_seconds_is_capped_everywhere`.
    RetryAfterSecs = 164,
    /// bounds.rs `a_panic_is_unknown_for_check_and_one_line_for_other_commands` (config only).
    BoundsPanic = 165,
    /// outcomes.rs `issue_that_flipped_current_succeeds_when_the_state_write_fails`.
    OutcomeStateFull = 180,
    /// outcomes.rs `renew_on_a_read_only_share_names_the_file_and_the_step`.
    OutcomeReadOnly = 181,
    /// outcomes.rs `renew_names_an_unreadable_current_and_orders_nothing`.
    OutcomeUnreadable = 182,
    /// outcomes.rs `check_escapes_text_read_from_the_shared_directory` (config only).
    OutcomeEscape = 183,
    /// outcomes.rs `serve_survives_sighup_and_says_what_it_did` (.11:8080).
    OutcomeSighup = 184,
    /// outcomes.rs `account_show_prints_the_contacts_the_ca_holds`.
    OutcomeContacts = 185,
    /// clock_skew.rs `a_node_ten_minutes_ahead_places_no_second_order` (Pebble .2 and its slow
    /// relay on .2:14001, VIP .10, nodes .11-.13).
    ClockAhead = 150,
    /// clock_skew.rs `a_node_ten_minutes_behind_places_no_second_order` (as `ClockAhead`).
    ClockBehind = 151,
    /// clock_skew.rs `a_lease_claiming_forever_is_taken_over_and_check_warns`.
    ClockForeverLease = 152,
    /// clock_skew.rs `a_node_far_ahead_sweeps_no_live_challenge_file` (configs only).
    ClockSweep = 153,
    /// soak.rs `pebble_validates_through_the_vip_during_slowloris_status_and_idle_floods`
    /// (Pebble .2, balancer VIP .10 with admin on :9811, nodes .11-.12, attackers .101-.110).
    Soak = 99,
    /// ca_bounds.rs `a_ca_that_never_answers_is_given_up_at_the_deadline` (the CA on .1).
    CaSilent = 170,
    /// ca_bounds.rs `an_endless_body_is_read_no_further_than_the_cap`.
    CaEndless = 171,
    /// ca_bounds.rs `a_ca_that_sends_one_byte_a_second_is_given_up_at_the_deadline`.
    CaSlowloris = 172,
    /// ca_bounds.rs `a_redirect_to_another_host_is_not_followed` (.2: the other host).
    CaRedirect = 173,
    /// ca_bounds.rs `an_announced_4_gib_body_is_refused_unread`.
    CaHugeLength = 174,
    /// first_steps.rs: a `Site::new` site on a fresh shared_dir; `serve --watch` on .11:5002.
    FirstSteps = 190,
    /// renew_stub.rs `a_renew_with_nothing_due_asks_the_ca_nothing_until_its_retry_after` (and `status`).
    RenewQuietAri = 200,
    /// renew_stub.rs `a_ca_without_ari_is_asked_again_a_day_later_not_every_run`.
    RenewQuietNoAri = 201,
    /// status.rs `status_shows_version_renewal_backoff_and_each_nodes_install` (Pebble .2).
    StatusPebble = 202,
    /// fleet_page.rs `fleet_page_renders_in_chromium_with_a_cell_per_node_and_lineage`
    /// (Pebble lab: Pebble .2, VIP .10, nodes .11-.13).
    FleetPage = 210,
    /// dry_run.rs `dry_runs_order_at_staging_and_leave_share_and_roots_byte_identical`
    /// (Pebble .2 as the staging CA; .1:14000 the production CA that must hear nothing).
    DryRun = 205,
    /// dry_run.rs `a_failing_dry_run_counts_nothing_and_tells_nobody` (as `DryRun`).
    DryRunFails = 206,
    /// metrics.rs `prometheus_scrapes_serve_balance_and_the_textfiles` (Pebble .2, the
    /// balancer's admin .1:9811, node_exporter .3:19100, Prometheus .4:19090, VIP .10 with the
    /// balanced service on :7080, dtn1 .11 with its metrics on :9812).
    MetricsScrape = 215,
    /// metrics.rs `serve_metrics_count_what_the_node_server_answered` (.11:8080, metrics .11:9812).
    MetricsServe = 216,
    /// metrics.rs `renew_writes_the_textfile_and_never_fails_for_it` (configs only).
    MetricsTextfile = 217,
    /// dns01.rs `toolbox_finds_zones_follows_cnames_and_updates_with_tsig` (BIND .1 and .3).
    DnsToolbox = 220,
    /// dns01.rs `rfc2136_issues_the_vip_and_three_nodes_in_the_shared_layout` (BIND .1, Pebble .2).
    Dns01Shared = 221,
    /// dns01.rs `rfc2136_issues_the_vip_and_three_nodes_in_the_per_host_layout`.
    Dns01PerHost = 222,
    /// dns01.rs `exec_method_with_an_nsupdate_script_issues`.
    Dns01Exec = 223,
    /// dns01.rs `a_cname_delegated_acme_challenge_is_followed`.
    Dns01Cname = 224,
    /// dns01.rs `a_lagging_secondary_holds_the_barrier_and_is_named_on_timeout` (secondary .3).
    Dns01Lag = 225,
    /// dns01.rs `a_wrong_tsig_secret_fails_preflight_before_any_order`.
    Dns01BadTsig = 226,
    /// dns01.rs `a_run_killed_mid_order_leaves_no_txt_record_after_the_next_run`.
    Dns01Killed = 227,
    /// dns01.rs `dns_persist_01_falls_back_to_dns_01_where_the_ca_does_not_offer_it`.
    Dns01PersistFallback = 228,
    /// dns01.rs `one_order_mixes_dns_01_and_a_node_s_own_http_01` (BIND .1, Pebble .2, VIP
    /// .10, nodes .11-.12).
    Dns01Mixed = 229,
    /// persist.rs `persist_record_prints_the_drafts_syntax_for_this_account` (the stub CA on .1).
    PersistRecord = 235,
    /// persist.rs `persist_record_without_an_issuer_name_says_to_pass_one` (the stub CA on .1).
    PersistNoIssuer = 236,
    /// persist.rs `dns_persist_records_are_checked_on_every_server_and_answer_the_order` (the
    /// stub CA .1, BIND primary .2 and secondary .3).
    PersistOrder = 237,
    /// named_ca.rs `each_lineage_comes_from_its_own_ca_and_is_revoked_there` (Pebble .2 for
    /// [acme], a second Pebble .3 for [[acme.ca]] "igtf", VIP .10, nodes .11-.12).
    NamedCaTwoPebbles = 230,
    /// renew_stub.rs `a_cn_dropping_profile_is_refused_before_the_ca_hears_anything`.
    ProfileCnRefused = 231,
    /// renew_stub.rs `a_named_ca_s_profile_it_does_not_offer_is_refused_before_any_order`
    /// (the stub .1; [acme] names .2:9, where nothing listens).
    NamedCaProfileMissing = 232,
    /// renew_stub.rs `require_cn_false_takes_a_certificate_without_cn`.
    ProfileCnOptional = 233,
    /// named_ca.rs `a_dry_run_orders_each_lineage_at_its_own_ca_s_staging` (Pebbles: .2 [acme],
    /// .3 "igtf", .4 [acme]'s staging, .5 igtf's staging; VIP .10, nodes .11-.12).
    NamedCaDryRun = 234,
}

impl Block {
    /// "127.0.N": the prefix `LabOptions::net` and `Site::new` take.
    pub fn net(self) -> String {
        format!("127.0.{}", self as u8)
    }

    /// 127.0.N.`host`.
    pub fn ip(self, host: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(127, 0, self as u8, host))
    }

    /// "127.0.N.`host`", for configs and the `&str` tuples the balancer tests build them from.
    /// Leaked: a test names a handful of addresses once, and a `&'static str` goes anywhere.
    pub fn host(self, host: u8) -> &'static str {
        Box::leak(self.ip(host).to_string().into_boxed_str())
    }

    /// 127.0.N.`host`:`port`.
    pub fn addr(self, host: u8, port: u16) -> SocketAddr {
        SocketAddr::new(self.ip(host), port)
    }
}

#[test]
fn blocks_are_distinct_and_not_reserved() {
    let mut seen = std::collections::BTreeMap::new();
    for &b in Block::ALL {
        if let Some((_, whose)) = RESERVED.iter().find(|(n, _)| *n == b as u8) {
            panic!("{b:?}: 127.0.{}.0/24 is reserved for {whose}", b as u8);
        }
        if let Some(other) = seen.insert(b as u8, b) {
            panic!("{b:?} and {other:?} share 127.0.{}.0/24", b as u8);
        }
    }
    assert_eq!(Block::IssueNodeDown.host(13), "127.0.12.13");
    assert_eq!(
        Block::Gridftp.addr(11, 2811),
        "127.0.60.11:2811".parse().unwrap()
    );
}
