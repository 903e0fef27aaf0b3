//! The message decoders: an arbitrary frame body decoded as every message type the
//! coordinator, a worker or the fork server decodes. None may panic; whatever
//! decodes must encode again and decode to the same value, and the borrowed view a
//! worker uses must agree with the owned message.
#![no_main]

use agox_wire::{
    decode, decode_borrowed, encode_frame, ForkReply, ForkRequest, FromWorker, ToWorker,
    ToWorkerView, HEADER_LEN,
};
use libfuzzer_sys::fuzz_target;

fn round_trip<T>(body: &[u8])
where
    T: serde::de::DeserializeOwned + serde::Serialize + PartialEq + std::fmt::Debug,
{
    if let Ok(m) = decode::<T>(body) {
        let frame = encode_frame(&m).expect("a decoded message encodes");
        let again: T = decode(&frame[HEADER_LEN..]).expect("an encoded message decodes");
        assert_eq!(m, again);
    }
}

fuzz_target!(|body: &[u8]| {
    round_trip::<FromWorker>(body);
    round_trip::<ToWorker>(body);
    round_trip::<ForkRequest>(body);
    round_trip::<ForkReply>(body);
    let view = decode_borrowed::<ToWorkerView<'_>>(body);
    if let (Ok(v), Ok(owned)) = (&view, decode::<ToWorker>(body)) {
        // Same variant on both paths.
        let name = format!("{v:?}");
        let owned_name = format!("{owned:?}");
        assert_eq!(
            name.split([' ', '{', '(']).next(),
            owned_name.split([' ', '{', '(']).next(),
            "{name} vs {owned_name}"
        );
    }
});
