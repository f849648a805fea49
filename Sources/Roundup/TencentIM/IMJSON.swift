/// The IM code's name for the strict JSON reader every endpoint shares.
typealias IMJSON = StrictJSON

/// The IM code's name for an object read by the strict JSON reader.
typealias IMJSONObject = StrictJSONObject
