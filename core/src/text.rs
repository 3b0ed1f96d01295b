//! Tony text: parsing (JSON, flow and block style) and printing (the one-line
//! wire form and the block form).
