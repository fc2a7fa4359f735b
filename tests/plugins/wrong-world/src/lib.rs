//! A component with the wrong exports: the host must refuse it and say what is missing.
wit_bindgen::generate!({ world: "wrong", path: "wit" });

struct Wrong;

impl exports::test::wrong::policy::Guest for Wrong {
    fn decide_later(input: String) -> u32 {
        input.len() as u32
    }
}

export!(Wrong);
