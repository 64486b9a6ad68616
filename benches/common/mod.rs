//! What the benchmarks share.

/// Tracked companies: names a news feed about technology and markets would carry.
pub const COMPANIES: &[&str] = &[
    "Apple",
    "Samsung",
    "Nvidia",
    "Xiaomi",
    "Alphabet",
    "Microsoft",
    "Amazon",
    "Meta",
    "Intel",
    "AMD",
    "Qualcomm",
    "Huawei",
    "Sony",
    "Tesla",
    "Toyota",
    "Siemens",
    "SAP",
    "Oracle",
    "IBM",
    "Cisco",
    "Adobe",
    "Netflix",
    "Spotify",
    "Uber",
    "Airbnb",
    "Alibaba",
    "Tencent",
    "Baidu",
    "ByteDance",
    "Lenovo",
    "Dell",
    "HP",
    "Nokia",
    "Ericsson",
    "Philips",
    "Bosch",
    "Arm",
    "TSMC",
    "Infineon",
    "Shopify",
];

/// A setting from the environment, or `default`; a value that does not parse stops the bench.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text} is not a valid value")),
        Err(_) => default,
    }
}
