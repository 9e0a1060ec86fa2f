//! Campaign files, raw: any text is a campaign that keeps validation's promises or a
//! `CampaignError` naming the file; never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = hongbao_fuzz::campaign::parse_and_check(text);
});
