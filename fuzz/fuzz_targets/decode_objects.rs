//! Every object decoder on arbitrary bytes: no panic, and whatever decodes re-encodes to
//! exactly the input (one canonical encoding per value).
#![no_main]

use cairn_spec::*;
use libfuzzer_sys::fuzz_target;

fn check<T: Decode + Encode>(b: &[u8]) {
    if let Ok(v) = T::from_bytes(b) {
        assert_eq!(v.to_bytes(), b, "{} is not canonical", T::NAME);
    }
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the type so the fuzzer can specialise; the rest is the input.
    let Some((&which, rest)) = data.split_first() else { return };
    match which % 19 {
        0 => check::<TaskClass>(rest),
        1 => check::<Task>(rest),
        2 => check::<Signed<Registration>>(rest),
        3 => check::<Signed<Commitment>>(rest),
        4 => check::<Signed<Reveal>>(rest),
        5 => check::<SignedReceipt>(rest),
        6 => check::<LedgerEntry>(rest),
        7 => check::<SignedEpochHeader>(rest),
        8 => check::<Signed<TaskAnnouncement>>(rest),
        9 => check::<Signed<Claim>>(rest),
        10 => check::<GossipMessage>(rest),
        11 => check::<Request>(rest),
        12 => check::<Signed<ScoreCommit>>(rest),
        13 => check::<Signed<ScoreReveal>>(rest),
        14 => check::<Signed<ValidatorRegistration>>(rest),
        15 => check::<ScoredRound>(rest),
        16 => check::<Signed<Probe>>(rest),
        17 => check::<Signed<ProbeAnswer>>(rest),
        _ => check::<Response>(rest),
    }
});
