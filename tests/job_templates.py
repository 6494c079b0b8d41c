"""Input and output templates shared by the tests of work creation and the daemons."""

IN_TEMPLATE = """<input_template>
    <file_info>
        <number>0</number>
        <sticky/>
    </file_info>
    <file_info>
        <number>1</number>
    </file_info>
    <workunit>
        <file_ref>
            <file_number>0</file_number>
            <open_name>script.R</open_name>
        </file_ref>
        <file_ref>
            <open_name>data.csv</open_name>
            <copy_file/>
        </file_ref>
        <rsc_fpops_est>2e12</rsc_fpops_est>
        <min_quorum>2</min_quorum>
        <target_nresults>2</target_nresults>
        <max_error_results>3</max_error_results>
        <max_total_results>6</max_total_results>
        <max_success_results>4</max_success_results>
        <delay_bound>3600</delay_bound>
        <credit>5</credit>
    </workunit>
</input_template>
"""
OUT_TEMPLATE = """<output_template>
    <file_info>
        <name><OUTFILE_0/></name>
        <generated_locally/>
        <upload_when_present/>
        <max_nbytes>100000</max_nbytes>
        <url><UPLOAD_URL/></url>
    </file_info>
    <result>
        <file_ref>
            <file_name><OUTFILE_0/></file_name>
            <open_name>result.rds</open_name>
        </file_ref>
    </result>
</output_template>
"""
